import { INestApplication, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import {
  ConnectionAcquireTimeoutError,
  Propagation,
  Transactional,
  TransactionHost,
} from '../src';
import { closeLibApp, createLibApp } from './support/lib-app';
import { Order } from './support/order.entity';
import { poolState } from './support/db';

@Injectable()
class Audit {
  constructor(private readonly tx: TransactionHost) {}

  /**
   * Holds its connection until every caller's REQUIRES_NEW has settled (`settled`), then fails
   * with the audit's error: a caller that failed first would otherwise free its connection for
   * the REQUIRES_NEW of another that is still waiting.
   */
  @Transactional()
  async outer(
    label: string,
    entered: () => Promise<void>,
    settled: () => Promise<void>,
  ) {
    await this.tx.getRepository(Order).save({ label });
    await entered();
    let failure: unknown;
    try {
      await this.audit(label);
    } catch (error) {
      failure = error;
    }
    await settled();
    if (failure !== undefined) throw failure;
  }

  @Transactional({ propagation: Propagation.RequiresNew })
  async audit(label: string) {
    await this.tx.getRepository(Order).save({ label: `${label}-audit` });
  }
}

describe('when every pooled connection is held by a caller that opens REQUIRES_NEW', () => {
  let app: INestApplication;
  const POOL = 2;

  beforeAll(async () => {
    app = await createLibApp({
      providers: [Audit],
      queues: [],
      listen: false,
      poolSize: POOL,
      options: { acquireTimeoutMs: 500 },
    });
  });

  afterAll(() => closeLibApp(app, []));

  it('should fail each caller after the acquire timeout with an error naming the pool and REQUIRES_NEW, and leak no connection', async () => {
    const audit = app.get(Audit);
    // Both callers hold their connection before either asks for a second one, and until both
    // REQUIRES_NEW scopes have settled.
    const barrier = () => {
      let arrived = 0;
      let release!: () => void;
      const all = new Promise<void>((resolve) => (release = resolve));
      return async () => {
        if (++arrived === POOL) release();
        await all;
      };
    };
    const entered = barrier();
    const settled = barrier();
    const results = await Promise.allSettled(
      Array.from({ length: POOL }, (_, i) =>
        audit.outer(`exhausted-${i}`, entered, settled),
      ),
    );

    for (const result of results) {
      expect(result.status).toBe('rejected');
      const reason = (result as PromiseRejectedResult).reason;
      expect(reason).toBeInstanceOf(ConnectionAcquireTimeoutError);
      expect(reason.message).toMatch(/Audit\.audit/);
      expect(reason.message).toMatch(/pool size 2/);
      expect(reason.message).toMatch(/REQUIRES_NEW inside a transaction/);
    }
    // The pool recovers: the late connections went back, a normal call works.
    await audit.audit('after-exhaustion');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(poolState(app.get(DataSource)).inUse).toBe(0);
  });
});
