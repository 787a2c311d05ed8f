/**
 * Red-team: TransactionAwareQueue add()/addBulk() edge cases, durable misuse, Bull options,
 * plain-queue detector. Each test states what the README promises and asserts it exactly.
 */
import { INestApplication, Injectable } from '@nestjs/common';
import type { Queue } from 'bull';
import {
  InjectTransactionAwareQueue,
  PlainQueueInTransactionError,
  TransactionalError,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { itOnPostgres, uniqueName } from './support/env';
import { LIB_QUEUE } from './support/queue-kind';
import { createOutboxTable } from './support/outbox-table';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  waitFor,
} from './support/lib-app';
import { Order } from './support/order.entity';
import { watchProcessFailures } from './support/process-failures';

const PLAIN = uniqueName('rt-plain');
const DURABLE = uniqueName('rt-durable');
const NOBOX = uniqueName('rt-nobox');
const TABLE = 'tx_redteam_outbox';

const failures = watchProcessFailures();
afterAll(() => failures.dispose());

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

async function settle(ms = 300) {
  await new Promise((r) => setTimeout(r, ms));
}

describe('redteam: queue edge cases (outbox configured, detector=throw)', () => {
  let app: INestApplication;
  let svc: Svc;
  let plainBull: Queue;
  let durableBull: Queue;

  beforeAll(async () => {
    await createOutboxTable(TABLE);
    app = await createLibApp({
      providers: [Svc],
      queues: [{ name: PLAIN }, { name: DURABLE, durable: true }],
      options: {
        plainQueueInTransaction: 'throw',
        outbox: {
          tableName: TABLE,
          relay: { enabled: false },
          markBatchDelayMs: 5,
        },
      },
      listen: false,
    });
    svc = app.get(Svc);
    plainBull = bullQueue(app, PLAIN);
    durableBull = bullQueue(app, DURABLE);
  });

  afterAll(() => closeLibApp(app, [PLAIN, DURABLE]));

  it('addBulk mixing durable and plain with one shared jobId: first data wins', async () => {
    const jobId = uniqueName('shared');
    await svc.tx.withTransaction(async () => {
      await svc.plain.addBulk([
        { data: { n: 1 }, opts: { jobId, durable: true } },
        { data: { n: 2 }, opts: { jobId } },
      ]);
    });
    await waitFor(async () => (await plainBull.getJob(jobId)) !== null, 'job');
    await settle();
    expect((await plainBull.getJob(jobId))!.data).toEqual({ n: 1 });
  });

  it('addBulk that rejects (one durable job not serialisable) adds none of its jobs, even if the caller catches', async () => {
    const okId = uniqueName('ok');
    const badId = uniqueName('bad');
    let rejected: unknown;
    await svc.tx.withTransaction(async () => {
      await svc.tx.getRepository(Order).save({ label: 'rt-bulk-reject' });
      await svc.plain
        .addBulk([
          { data: { ok: true }, opts: { jobId: okId } },
          { data: { big: BigInt(1) }, opts: { jobId: badId, durable: true } },
        ])
        .catch((e) => (rejected = e));
    });
    expect(rejected).toBeDefined();
    await settle(500);
    expect(await plainBull.getJob(badId)).toBeNull();
    // the call rejected as a whole: its plain job must not appear either
    expect(await plainBull.getJob(okId)).toBeNull();
  });

  itOnPostgres(
    "Postgres' jsonb refuses the NUL character; MySQL's JSON and MariaDB store it",
  )(
    'a durable job whose data holds a NUL character is refused with a clear error, before any statement, and the transaction goes on',
    async () => {
      const jobId = uniqueName('nul');
      const keptId = uniqueName('nul-kept');
      let refusal: unknown;
      await expect(
        svc.tx.withTransaction(async () => {
          refusal = await svc.durable
            .add({ s: 'a\u0000b' }, { jobId })
            .catch((error: unknown) => error);
          // The transaction is still usable: another durable job commits with it.
          await svc.durable.add({ s: 'kept' }, { jobId: keptId });
        }),
      ).resolves.toBeUndefined();
      expect(refusal).toBeInstanceOf(TransactionalError);
      expect(String(refusal)).toMatch(/NUL character/);
      await waitFor(
        async () => (await durableBull.getJob(keptId)) !== null,
        'the other job',
        3000,
      );
      expect(await durableBull.getJob(jobId)).toBeNull();
    },
  );

  // NOTE: BullMQ takes string ids only; its refusal is specified in bullmq-job-ids.spec.ts.
  (LIB_QUEUE === 'bull' ? it : it.skip).each([
    ['plain', false],
    ['durable', true],
  ])(
    'numeric jobId (%s) resolves with its string form and the job exists',
    async (_l, durable) => {
      const num = 900_000_000 + Math.floor(Math.random() * 99_999_999);
      let id: string | undefined;
      await svc.tx.withTransaction(async () => {
        id = await svc.plain.add({ num }, { jobId: num, durable });
      });
      expect(id).toBe(String(num));
      await waitFor(async () => (await plainBull.getJob(num)) !== null, 'job');
      expect(String((await plainBull.getJob(num))!.id)).toBe(String(num));
    },
  );

  it.each([
    ['plain', false],
    ['durable', true],
  ])(
    'lifo/delay/priority/timeout/attempts/backoff/removeOnFail reach Bull unchanged (%s)',
    async (_l, durable) => {
      const jobId = uniqueName('opts');
      const opts = {
        jobId,
        lifo: true,
        delay: 60_000,
        priority: 3,
        timeout: 1234,
        attempts: 4,
        backoff: { type: 'exponential', delay: 10 },
        removeOnFail: 7,
      };
      await svc.tx.withTransaction(async () => {
        await svc.plain.add('named', { x: 1 }, { ...opts, durable });
      });
      await waitFor(
        async () => (await plainBull.getJob(jobId)) !== null,
        'job',
      );
      const job = (await plainBull.getJob(jobId))!;
      expect(job.name).toBe('named');
      expect(await job.getState()).toBe('delayed');
      expect(job.opts).toMatchObject({
        lifo: true,
        delay: 60_000,
        priority: 3,
        timeout: 1234,
        attempts: 4,
        backoff: { type: 'exponential', delay: 10 },
        removeOnFail: 7,
      });
      expect((job.opts as any).durable).toBeUndefined();
    },
  );

  it('detector=throw: plain Bull add/addBulk inside a transaction reject, outside and in afterCommit they work', async () => {
    const inside = uniqueName('in');
    const hook = uniqueName('hook');
    const errors: unknown[] = [];
    await svc.tx.withTransaction(async () => {
      await plainBull.add({}, { jobId: inside }).catch((e) => errors.push(e));
      await plainBull
        .addBulk([{ data: {}, opts: { jobId: inside } }])
        .catch((e) => errors.push(e));
      await svc.tx.afterCommit(() => plainBull.add({}, { jobId: hook }));
    });
    expect(errors).toHaveLength(2);
    for (const e of errors)
      expect(e).toBeInstanceOf(PlainQueueInTransactionError);
    expect(await plainBull.getJob(inside)).toBeNull();
    expect(await plainBull.getJob(hook)).not.toBeNull();
  });

  it('detector=throw still applies to this app after a second app with the default policy starts', async () => {
    const other = await createLibApp({
      queues: [{ name: NOBOX }],
      listen: false,
    });
    try {
      const jobId = uniqueName('two-apps');
      let error: unknown;
      await svc.tx.withTransaction(async () => {
        await plainBull.add({}, { jobId }).catch((e) => (error = e));
      });
      expect(error).toBeInstanceOf(PlainQueueInTransactionError);
      expect(await plainBull.getJob(jobId)).toBeNull();
    } finally {
      await closeLibApp(other, [NOBOX]);
    }
  });

  it('no unhandled rejection or uncaught exception so far', () => {
    expect(failures.unhandledRejections).toEqual([]);
    expect(failures.uncaughtExceptions).toEqual([]);
  });
});

describe('redteam: durable job asked for without an outbox', () => {
  let app: INestApplication;
  let svc2: { tx: TransactionHost; q: TransactionAwareQueue<any> };
  let bull: Queue;

  @Injectable()
  class Svc2 {
    constructor(
      readonly tx: TransactionHost,
      @InjectTransactionAwareQueue(NOBOX)
      readonly q: TransactionAwareQueue<any>,
    ) {}
  }

  beforeAll(async () => {
    app = await createLibApp({
      providers: [Svc2],
      queues: [{ name: NOBOX }],
      listen: false,
    });
    svc2 = app.get(Svc2);
    bull = bullQueue(app, NOBOX);
  });
  afterAll(() => closeLibApp(app, [NOBOX]));

  it('add(durable) rejects with a clear error and, if the caller catches it, the job is NOT enqueued', async () => {
    const jobId = uniqueName('nobox');
    let error: unknown;
    await svc2.tx.withTransaction(async () => {
      await svc2.q
        .add({ a: 1 }, { jobId, durable: true })
        .catch((e) => (error = e));
    });
    expect(error).toBeInstanceOf(TransactionalError);
    await settle(500);
    expect(await bull.getJob(jobId)).toBeNull();
  });

  it('addBulk with one durable job rejects and enqueues none of them', async () => {
    const a = uniqueName('nobox-a');
    const b = uniqueName('nobox-b');
    let error: unknown;
    await svc2.tx.withTransaction(async () => {
      await svc2.q
        .addBulk([
          { data: {}, opts: { jobId: a } },
          { data: {}, opts: { jobId: b, durable: true } },
        ])
        .catch((e) => (error = e));
    });
    expect(error).toBeInstanceOf(TransactionalError);
    await settle(500);
    expect(await bull.getJob(a)).toBeNull();
    expect(await bull.getJob(b)).toBeNull();
  });
});
