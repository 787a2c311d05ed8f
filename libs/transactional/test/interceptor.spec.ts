import {
  Controller,
  INestApplication,
  Injectable,
  PipeTransform,
  Post,
  Query,
} from '@nestjs/common';
import request from 'supertest';
import {
  Propagation,
  Transactional,
  TransactionHost,
  TransactionRunner,
} from '../src';
import { uniqueName } from './support/env';
import { closeLibApp, createLibApp } from './support/lib-app';
import { transactionId } from './support/db';

const QUEUE = uniqueName('interceptor');

/** Records whether a transaction was active when the pipe ran. */
@Injectable()
class SeesTransaction implements PipeTransform {
  constructor(private readonly tx: TransactionHost) {}

  transform(value: unknown) {
    return { value, inTransaction: this.tx.isActive };
  }
}

@Controller()
class ScopesController {
  constructor(private readonly tx: TransactionHost) {}

  private async txid(): Promise<string> {
    return transactionId(this.tx.manager);
  }

  @Post('wrapped')
  @Transactional({ propagation: Propagation.RequiresNew })
  async wrapped(@Query('q', SeesTransaction) pipe: { inTransaction: boolean }) {
    return { pipeInTransaction: pipe.inTransaction, txid: await this.txid() };
  }

  @Post('intercepted')
  @Transactional({ propagation: Propagation.RequiresNew, useInterceptor: true })
  async intercepted(
    @Query('q', SeesTransaction) pipe: { inTransaction: boolean },
  ) {
    return { pipeInTransaction: pipe.inTransaction, txid: await this.txid() };
  }

  @Post('intercepted-nested')
  @Transactional({ propagation: Propagation.Nested, useInterceptor: true })
  async nested(@Query('q', SeesTransaction) pipe: { inTransaction: boolean }) {
    return { pipeInTransaction: pipe.inTransaction, txid: await this.txid() };
  }
}

describe('when a route handler is decorated with and without useInterceptor', () => {
  let app: INestApplication;
  let runner: TransactionRunner;

  beforeAll(async () => {
    app = await createLibApp({
      controllers: [ScopesController],
      providers: [SeesTransaction],
      queues: [{ name: QUEUE }],
    });
    runner = app.get(TransactionRunner);
  });

  afterAll(() => closeLibApp(app, [QUEUE]));

  const call = async (path: string) => {
    const before = runner.stats.committed;
    const res = await request(await app.getUrl())
      .post(`${path}?q=1`)
      .expect(201);
    return { ...res.body, transactions: runner.stats.committed - before };
  };

  it('should run pipes outside the transaction by default (it wraps the handler)', async () => {
    expect(await call('/wrapped')).toMatchObject({
      pipeInTransaction: false,
      transactions: 1,
    });
  });

  it('should run pipes inside it with useInterceptor, opening exactly one transaction', async () => {
    expect(await call('/intercepted')).toMatchObject({
      pipeInTransaction: true,
      transactions: 1,
    });
    expect(await call('/intercepted-nested')).toMatchObject({
      pipeInTransaction: true,
      transactions: 1,
    });
  });
});
