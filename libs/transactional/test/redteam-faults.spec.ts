/**
 * Red-team: Redis paused/killed at commit time (own redis-server), app.close() while a
 * transaction never returns, two DataSources.
 */
import { BullModule, getQueueToken } from '@nestjs/bull';
import { INestApplication, Injectable } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TypeOrmModule, getDataSourceToken } from '@nestjs/typeorm';
import Bull, { Queue } from 'bull';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  InjectTransactionHost,
  NoTransactionError,
  Transactional,
  TransactionalModule,
  TransactionAwareQueue,
  TransactionHost,
  TransactionRunner,
} from '../src';
import {
  startOwnRedis,
  OwnRedis,
} from '../../../test/faults/support/own-redis';
import { testRedisUrl, uniqueName, testDataSourceOptions } from './support/env';
import { createOutboxTable } from './support/outbox-table';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  waitFor,
} from './support/lib-app';
import { Order } from './support/order.entity';
import { watchProcessFailures } from './support/process-failures';
import { dbQuery } from './support/db';

const failures = watchProcessFailures();
afterAll(() => failures.dispose());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A timer that does not keep the process alive (a race's losing side must not hold jest for 20 s). */
const unrefSleep = (ms: number) =>
  new Promise<void>((r) => setTimeout(r, ms).unref());

const PLAIN = uniqueName('rtf-plain');
const DURABLE = uniqueName('rtf-durable');
const TABLE = 'tx_redteam_outbox3';

@Injectable()
class Svc {
  constructor(
    readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(PLAIN)
    readonly plain: TransactionAwareQueue<any>,
    @InjectTransactionAwareQueue(DURABLE)
    readonly durable: TransactionAwareQueue<any>,
  ) {}
}

describe('redteam: Redis down at commit time (own redis-server)', () => {
  let redis: OwnRedis;
  let app: INestApplication;
  let svc: Svc;
  let plain: Queue;
  let durable: Queue;

  beforeAll(async () => {
    redis = await startOwnRedis();
    await createOutboxTable(TABLE);
    app = await createLibApp({
      providers: [Svc],
      queues: [
        { name: PLAIN, bull: { url: redis.url } },
        { name: DURABLE, durable: true, bull: { url: redis.url } },
      ],
      options: {
        afterCommitTimeoutMs: 1000,
        outbox: {
          tableName: TABLE,
          fastPathTimeoutMs: 300,
          relay: {
            graceMs: 600,
            pollIntervalMs: 100,
            redisTimeoutMs: 500,
            maxBackoffMs: 400,
          },
        },
      },
      listen: false,
    });
    svc = app.get(Svc);
    plain = bullQueue(app, PLAIN);
    durable = bullQueue(app, DURABLE);
    await plain.isReady();
    await durable.isReady();
  });

  afterAll(async () => {
    redis?.resume();
    await closeLibApp(app, [PLAIN, DURABLE]);
    await redis?.stop();
  });

  it('paused Redis, plain job: the caller waits at most afterCommitTimeoutMs; nothing crashes', async () => {
    const jobId = uniqueName('paused-plain');
    redis.pause();
    const t0 = Date.now();
    let elapsed: number;
    try {
      await svc.tx.withTransaction(async () => {
        await svc.plain.add({}, { jobId });
      });
    } finally {
      elapsed = Date.now() - t0;
      redis.resume();
    }
    expect(elapsed).toBeLessThan(1800);
    await sleep(300);
  });

  it('paused Redis, durable job: the caller waits ~fastPathTimeoutMs and the relay enqueues the job once Redis is back', async () => {
    const jobId = uniqueName('paused-durable');
    redis.pause();
    const t0 = Date.now();
    await svc.tx.withTransaction(async () => {
      await svc.durable.add({ v: 1 }, { jobId });
    });
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeLessThan(1000);
    await sleep(1500);
    redis.resume();
    await waitFor(
      async () => (await durable.getJob(jobId)) !== null,
      'relayed job',
      15_000,
    );
    expect((await durable.getJob(jobId))!.data).toEqual({ v: 1 });
  });

  it('killed Redis, durable job: answered at once, relayed after restart (empty Redis)', async () => {
    const jobId = uniqueName('killed-durable');
    await redis.kill();
    await sleep(200);
    const t0 = Date.now();
    await svc.tx.withTransaction(async () => {
      await svc.durable.add({ v: 2 }, { jobId });
    });
    expect(Date.now() - t0).toBeLessThan(1000);
    await redis.restart();
    await waitFor(
      async () => (await durable.getJob(jobId).catch(() => null)) !== null,
      'relayed job',
      20_000,
    );
    expect((await durable.getJob(jobId))!.data).toEqual({ v: 2 });
  });

  it('no unhandled rejection or uncaught exception', async () => {
    await sleep(200);
    expect(failures.unhandledRejections).toEqual([]);
    expect(failures.uncaughtExceptions).toEqual([]);
  });
});

describe('redteam: app.close() while a transaction never returns', () => {
  it('close() resolves in bounded time; the hung scope then settles, and a committed row has its job', async () => {
    const name = uniqueName('rtf-close');
    const app = await createLibApp({
      providers: [],
      queues: [{ name }],
      // NOTE: the default 10 s is what this test would wait; the limit is what it checks.
      options: { shutdownTimeoutMs: 1000 },
      listen: false,
    });
    const host = app.get(TransactionHost);
    const q = app.get<TransactionAwareQueue<any>>(
      (await import('../src')).getTransactionAwareQueueToken(name),
    );
    const label = uniqueName('hung');
    const jobId = uniqueName('hung-job');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const hung = host
      .withTransaction(async () => {
        await host.getRepository(Order).save({ label });
        await q.add({}, { jobId });
        await gate;
        return 'done';
      })
      .then(
        (v) => ({ ok: true, v }),
        (e) => ({ ok: false, e }),
      );
    await sleep(100);
    const t0 = Date.now();
    const closed = app.close().then(() => Date.now() - t0);
    const closeMs = await Promise.race([
      closed,
      unrefSleep(20_000).then(() => -1),
    ]);
    release();
    const settled = await Promise.race([
      hung,
      unrefSleep(5000).then(() => 'hang' as const),
    ]);
    const ds = new DataSource(testDataSourceOptions());
    await ds.initialize();
    const rows = Number(
      (
        await dbQuery(
          ds,
          `SELECT count(*)::int AS n FROM tx_spec_orders WHERE label = $1`,
          [label],
        )
      )[0].n,
    );
    await ds.destroy();
    const bull = new Bull(name, testRedisUrl());
    await sleep(300);
    const job = await bull.getJob(jobId);
    await bull.obliterate({ force: true }).catch(() => undefined);
    await bull.close();
    if (process.env.RT_DEBUG)
      console.log(
        JSON.stringify({
          closeMs,
          settled:
            String((settled as any).ok) +
            ' ' +
            String((settled as any).e ?? (settled as any).v),
          rows,
          job: job !== null,
        }),
      );
    if (closeMs === -1) await closed; // let it finish if it eventually does
    expect(closeMs).not.toBe(-1);
    expect(closeMs).toBeGreaterThanOrEqual(950);
    expect(closeMs).toBeLessThan(6_000);
    expect(settled).not.toBe('hang');
    // the promise: the job exists iff the row committed
    expect({ rows, job: job !== null }).toEqual({ rows, job: rows === 1 });
  }, 60_000);
});

const AQ = uniqueName('rtf-analytics');
const DQ = uniqueName('rtf-default');

@Injectable()
class TwoDs {
  constructor(
    readonly tx: TransactionHost,
    @InjectTransactionHost('analytics') readonly atx: TransactionHost,
    @InjectTransactionAwareQueue(AQ) readonly aq: TransactionAwareQueue<any>,
    @InjectTransactionAwareQueue(DQ) readonly dq: TransactionAwareQueue<any>,
  ) {}

  @Transactional()
  async onDefault(fn: () => Promise<unknown>) {
    return fn();
  }

  @Transactional({ connectionName: 'analytics' })
  async onAnalytics(fn: () => Promise<unknown>) {
    return fn();
  }
}

describe('redteam: two DataSources', () => {
  let app: INestApplication;
  let s: TwoDs;
  let aBull: Queue;
  let dBull: Queue;
  let ds: DataSource;
  const count = async (label: string) =>
    Number(
      (
        await dbQuery(
          ds,
          `SELECT count(*)::int AS n FROM tx_spec_orders WHERE label = $1`,
          [label],
        )
      )[0].n,
    );

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({
          ...testDataSourceOptions(),
          entities: [Order],
          synchronize: true,
        }),
        TypeOrmModule.forRoot({
          name: 'analytics',
          ...testDataSourceOptions(),
          entities: [Order],
        }),
        BullModule.forRoot({ url: testRedisUrl() }),
        BullModule.registerQueue({ name: AQ }, { name: DQ }),
        TransactionalModule.forRoot({
          connectionNames: ['default', 'analytics'],
        }),
        TransactionalModule.registerQueue(
          { name: AQ, connectionName: 'analytics', whenNoTransaction: 'throw' },
          { name: DQ, whenNoTransaction: 'throw' },
        ),
      ],
      providers: [TwoDs],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    s = app.get(TwoDs);
    aBull = app.get(getQueueToken(AQ), { strict: false });
    dBull = app.get(getQueueToken(DQ), { strict: false });
    ds = app.get(getDataSourceToken());
    expect(app.get(getDataSourceToken('analytics'))).not.toBe(ds);
  });

  afterAll(async () => {
    await aBull?.obliterate({ force: true }).catch(() => undefined);
    await dBull?.obliterate({ force: true }).catch(() => undefined);
    await app?.close();
  });

  it('a job for the analytics queue inside a default-only transaction is refused (whenNoTransaction=throw)', async () => {
    const jobId = uniqueName('a-in-d');
    let error: unknown;
    await s.onDefault(async () => {
      await s.aq.add({}, { jobId }).catch((e) => (error = e));
    });
    expect(error).toBeInstanceOf(NoTransactionError);
    expect(await aBull.getJob(jobId)).toBeNull();
  });

  it('analytics transaction rolls back inside a committed default one: only the default job and row survive', async () => {
    const jd = uniqueName('d-kept');
    const ja = uniqueName('a-dropped');
    const ld = uniqueName('ld');
    const la = uniqueName('la');
    await s.onDefault(async () => {
      await s.tx.getRepository(Order).save({ label: ld });
      await s.dq.add({}, { jobId: jd });
      await s
        .onAnalytics(async () => {
          await s.atx.getRepository(Order).save({ label: la });
          await s.aq.add({}, { jobId: ja });
          throw new Error('analytics fails');
        })
        .catch(() => undefined);
    });
    expect(await count(ld)).toBe(1);
    expect(await count(la)).toBe(0);
    expect(await dBull.getJob(jd)).not.toBeNull();
    expect(await aBull.getJob(ja)).toBeNull();
  });

  it('default rolls back after an inner analytics transaction committed: analytics row and job kept, default ones not', async () => {
    const jd = uniqueName('d-dropped');
    const ja = uniqueName('a-kept');
    const ld = uniqueName('ld2');
    const la = uniqueName('la2');
    await expect(
      s.onDefault(async () => {
        await s.tx.getRepository(Order).save({ label: ld });
        await s.dq.add({}, { jobId: jd });
        await s.onAnalytics(async () => {
          await s.atx.getRepository(Order).save({ label: la });
          await s.aq.add({}, { jobId: ja });
        });
        throw new Error('default fails');
      }),
    ).rejects.toThrow('default fails');
    expect(await count(ld)).toBe(0);
    expect(await count(la)).toBe(1);
    expect(await dBull.getJob(jd)).toBeNull();
    expect(await aBull.getJob(ja)).not.toBeNull();
    expect(app.get(TransactionRunner).stats.committed).toBeGreaterThan(0);
  });

  it('no unhandled rejection or uncaught exception', async () => {
    await sleep(200);
    expect(failures.unhandledRejections).toEqual([]);
    expect(failures.uncaughtExceptions).toEqual([]);
  });
});
