import {
  ArgumentsHost,
  Catch,
  Controller,
  ExceptionFilter,
  Get,
  INestApplication,
  Param,
  Post,
  UseFilters,
} from '@nestjs/common';
import { EventEmitter } from 'events';
import { Observable, defer, from, timer } from 'rxjs';
import { concatMap, map } from 'rxjs/operators';
import request from 'supertest';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { uniqueName } from './support/env';
import { Order } from './support/order.entity';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
} from './support/lib-app';

const QUEUE = uniqueName('adv2-http');

class Boom extends Error {}

@Catch(Boom)
class BoomFilter implements ExceptionFilter {
  catch(_error: Boom, host: ArgumentsHost) {
    host.switchToHttp().getResponse().status(200).json({ filtered: true });
  }
}

const bus = new EventEmitter();

@Controller()
class JobsController {
  constructor(
    private readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(QUEUE)
    private readonly queue: TransactionAwareQueue<{ label: string }>,
  ) {
    // a listener registered outside any scope; emitted synchronously inside one
    bus.on('order', (label: string, ids: Promise<string>[]) =>
      ids.push(this.queue.add({ label }, { jobId: `${label}-event` })),
    );
  }

  private async write(label: string) {
    await this.tx.getRepository(Order).save({ label });
    return this.queue.add({ label }, { jobId: label });
  }

  @Post('observable/:label')
  @Transactional({ useInterceptor: true })
  observable(@Param('label') label: string): Observable<unknown> {
    return timer(20).pipe(
      concatMap(() => from(this.write(label))),
      map((id) => ({ id })),
    );
  }

  @Post('observable-throws/:label')
  @Transactional({ useInterceptor: true })
  observableThrows(@Param('label') label: string): Observable<unknown> {
    return defer(async () => {
      await this.write(label);
      throw new Boom('after add');
    });
  }

  @Post('filtered/:label')
  @UseFilters(BoomFilter)
  @Transactional()
  async filtered(@Param('label') label: string) {
    await this.write(label);
    throw new Boom('after add');
  }

  @Post('filtered-i/:label')
  @UseFilters(BoomFilter)
  @Transactional({ useInterceptor: true })
  async filteredIntercepted(@Param('label') label: string) {
    await this.write(label);
    throw new Boom('after add');
  }

  @Post('tasks/:label')
  @Transactional()
  async tasks(@Param('label') label: string) {
    await this.tx.getRepository(Order).save({ label });
    const ids: Promise<string>[] = [];
    await new Promise<void>((resolve) =>
      setImmediate(() => {
        ids.push(this.queue.add({ label }, { jobId: `${label}-immediate` }));
        resolve();
      }),
    );
    await new Promise<void>((resolve) =>
      queueMicrotask(() => {
        ids.push(this.queue.add({ label }, { jobId: `${label}-microtask` }));
        resolve();
      }),
    );
    bus.emit('order', label, ids);
    return Promise.all(ids);
  }

  @Post('tasks-throw/:label')
  @Transactional()
  async tasksThrow(@Param('label') label: string) {
    await this.tasks(label);
    throw new Error('rollback');
  }

  @Get('hook/:label')
  @Transactional()
  async hook(@Param('label') label: string) {
    await this.tx.getRepository(Order).save({ label });
    let fromHook: Promise<string> | undefined;
    await this.tx.afterCommit(() => {
      fromHook = this.queue.add({ label }, { jobId: `${label}-hook` });
      return fromHook;
    });
    this.tx.afterRollback(() => undefined);
    return { ok: true };
  }
}

describe('adversarial2: @Transactional route handlers over real HTTP', () => {
  let app: INestApplication;
  const queue = () => bullQueue(app, QUEUE);
  const rows = (label: string) =>
    app.get(DataSource).getRepository(Order).countBy({ label });

  beforeAll(async () => {
    app = await createLibApp({
      controllers: [JobsController],
      providers: [BoomFilter],
      queues: [{ name: QUEUE }],
    });
  });

  afterAll(() => closeLibApp(app, [QUEUE]));

  it('an Observable handler with useInterceptor: row and job, under 40 concurrent requests', async () => {
    const labels = Array.from({ length: 40 }, () => uniqueName('obs'));
    const url = await app.getUrl();
    const res = await Promise.all(
      labels.map((label) => request(url).post(`/observable/${label}`)),
    );
    expect(res.map((r) => r.status)).toEqual(labels.map(() => 201));
    for (const label of labels) {
      expect([await rows(label), await inRedis(queue(), label)]).toEqual([
        1,
        true,
      ]);
    }
  });

  it('an Observable handler that errors after add(): no row, no job', async () => {
    const label = uniqueName('obs-throw');
    const res = await request(await app.getUrl()).post(
      `/observable-throws/${label}`,
    );
    expect(res.status).toBe(500);
    expect([await rows(label), await inRedis(queue(), label)]).toEqual([
      0,
      false,
    ]);
  });

  it.each(['filtered', 'filtered-i'])(
    'a handler that throws after add(), turned into a 200 by an exception filter (%s): no row, no job',
    async (route) => {
      const label = uniqueName(route);
      const res = await request(await app.getUrl()).post(`/${route}/${label}`);
      expect(res.body).toEqual({ filtered: true });
      expect([await rows(label), await inRedis(queue(), label)]).toEqual([
        0,
        false,
      ]);
    },
  );

  it('adds from setImmediate, queueMicrotask and a synchronous event listener: all after commit, none on rollback', async () => {
    const url = await app.getUrl();
    const ok = uniqueName('tasks');
    const bad = uniqueName('tasks-bad');
    const res = await request(url).post(`/tasks/${ok}`);
    expect(res.status).toBe(201);
    await request(url).post(`/tasks-throw/${bad}`).expect(500);
    const suffixes = ['immediate', 'microtask', 'event'];
    expect(
      await Promise.all(suffixes.map((s) => inRedis(queue(), `${ok}-${s}`))),
    ).toEqual([true, true, true]);
    expect(
      await Promise.all(suffixes.map((s) => inRedis(queue(), `${bad}-${s}`))),
    ).toEqual([false, false, false]);
    expect(await rows(bad)).toBe(0);
  });

  it('a job added from an afterCommit hook is in Redis when the response arrives', async () => {
    const label = uniqueName('hook');
    await request(await app.getUrl())
      .get(`/hook/${label}`)
      .expect(200);
    expect(await inRedis(queue(), `${label}-hook`)).toBe(true);
  });
});
