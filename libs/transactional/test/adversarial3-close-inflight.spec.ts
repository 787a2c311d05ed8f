/**
 * Adversarial 3: app.close() while many transactions are committing and their after-commit
 * enqueues (plain and durable) are in flight. After close: every committed plain job is in
 * Redis, every committed durable job is in Redis or its outbox row is pending; nothing of a
 * rolled-back transaction; close() resolves in bounded time; no unhandled rejection.
 */
import { INestApplication } from '@nestjs/common';
import Bull from 'bull';
import { Queue as MQQueue } from 'bullmq';
import { DataSource } from 'typeorm';
import {
  getTransactionAwareQueueToken,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import {
  OwnRedis,
  startOwnRedis,
} from '../../../test/faults/support/own-redis';
import { testRedisUrl, uniqueName } from './support/env';
import { dbQuery, openDataSource } from './support/db';
import { createLibApp } from './support/lib-app';
import { LIB_QUEUE } from './support/queue-kind';
import { Order } from './support/order.entity';
import { createOutboxTable } from './support/outbox-table';
import { watchProcessFailures } from './support/process-failures';

jest.setTimeout(60_000);

const failures = watchProcessFailures();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A timer that does not keep the process alive (a race's losing side must not hold jest for 20 s). */
const unrefSleep = (ms: number) =>
  new Promise<void>((r) => setTimeout(r, ms).unref());
const TABLE = 'tx_adv3_outbox_close';

let db: DataSource;
beforeAll(async () => {
  await createOutboxTable(TABLE);
  db = await openDataSource();
});
afterAll(async () => {
  await db?.destroy();
  failures.dispose();
});

/** A fresh client of queue `name` on `url` (the app's are closed): whether it holds each id. */
async function jobsIn(url: string, name: string, ids: string[]) {
  if (LIB_QUEUE === 'bull') {
    const q = new Bull(name, url);
    try {
      return await Promise.all(
        ids.map(async (id) => (await q.getJob(id)) !== null),
      );
    } finally {
      await q.obliterate({ force: true }).catch(() => undefined);
      await q.close();
    }
  }
  const u = new URL(url);
  const q = new MQQueue(name, {
    connection: { host: u.hostname, port: Number(u.port) },
  });
  try {
    return await Promise.all(
      ids.map(async (id) => (await q.getJob(id)) != null),
    );
  } finally {
    await q.obliterate({ force: true }).catch(() => undefined);
    await q.close();
  }
}

async function pendingRow(jobIds: string[]): Promise<Set<string>> {
  if (jobIds.length === 0) return new Set();
  const rows: { j: string }[] = await dbQuery(
    db,
    `SELECT opts->>'jobId' AS j FROM ${TABLE} WHERE dispatched_at IS NULL AND opts->>'jobId' = ANY($1::text[])`,
    [jobIds],
  );
  return new Set(rows.map((r) => r.j));
}

async function anyRow(jobIds: string[]): Promise<Set<string>> {
  if (jobIds.length === 0) return new Set();
  const rows: { j: string }[] = await dbQuery(
    db,
    `SELECT opts->>'jobId' AS j FROM ${TABLE} WHERE opts->>'jobId' = ANY($1::text[])`,
    [jobIds],
  );
  return new Set(rows.map((r) => r.j));
}

type Outcome = {
  committed: boolean;
  plainId: string;
  durableId: string;
  error?: string;
};

function startOne(
  app: INestApplication,
  plainName: string,
  durableName: string,
  tag: string,
  i: number,
  workMs: number,
): Promise<Outcome> {
  const host = app.get(TransactionHost);
  const plainQ: TransactionAwareQueue<any> = app.get(
    getTransactionAwareQueueToken(plainName),
  );
  const durableQ: TransactionAwareQueue<any> = app.get(
    getTransactionAwareQueueToken(durableName),
  );
  const plainId = `${tag}-p-${i}`;
  const durableId = `${tag}-d-${i}`;
  return host
    .withTransaction(async () => {
      await host.getRepository(Order).insert({ label: `${tag}-${i}` });
      await plainQ.add({ i }, { jobId: plainId });
      await sleep(workMs);
      await durableQ.add({ i }, { jobId: durableId });
      if (i % 5 === 4) throw new Error('rollback on purpose');
    })
    .then(
      () => ({ committed: true, plainId, durableId }),
      (e) => ({ committed: false, plainId, durableId, error: String(e) }),
    );
}

async function verify(
  url: string,
  plainName: string,
  durableName: string,
  outcomes: Outcome[],
) {
  const committed = outcomes.filter((o) => o.committed);
  const rolledBack = outcomes.filter((o) => !o.committed);
  const plainIn = await jobsIn(
    url,
    plainName,
    outcomes.map((o) => o.plainId),
  );
  const durableIn = await jobsIn(
    url,
    durableName,
    outcomes.map((o) => o.durableId),
  );
  const pending = await pendingRow(outcomes.map((o) => o.durableId));
  const rows = await anyRow(outcomes.map((o) => o.durableId));
  const problems: string[] = [];
  outcomes.forEach((o, k) => {
    if (o.committed) {
      if (!plainIn[k])
        problems.push(`committed plain ${o.plainId} not in Redis`);
      if (!durableIn[k] && !pending.has(o.durableId))
        problems.push(
          `committed durable ${o.durableId} neither in Redis nor pending`,
        );
    } else {
      if (plainIn[k]) problems.push(`rolled-back plain ${o.plainId} in Redis`);
      if (durableIn[k])
        problems.push(`rolled-back durable ${o.durableId} in Redis`);
      if (rows.has(o.durableId))
        problems.push(`rolled-back durable ${o.durableId} has a row`);
    }
  });
  return {
    problems,
    committed: committed.length,
    rolledBack: rolledBack.length,
  };
}

it('close() during a stream of 60 committing transactions (healthy Redis): every committed job kept, close bounded', async () => {
  const P = uniqueName('adv3-close-p');
  const D = uniqueName('adv3-close-d');
  const app = await createLibApp({
    queues: [{ name: P }, { name: D, durable: true }],
    options: {
      afterCommitTimeoutMs: 2000,
      outbox: { tableName: TABLE, relay: { graceMs: 5000 } },
    },
    listen: false,
    poolSize: 30,
  });
  const tag = uniqueName('s');
  const running: Promise<Outcome>[] = [];
  for (let i = 0; i < 30; i++)
    running.push(startOne(app, P, D, tag, i, 5 + (i % 7) * 10));
  await sleep(30);
  const t0 = Date.now();
  const closing = app.close().then(() => Date.now() - t0);
  // more transactions keep arriving while the app drains and after it closed
  for (let i = 30; i < 60; i++) {
    running.push(startOne(app, P, D, tag, i, 5 + (i % 7) * 10));
    await new Promise((r) => setImmediate(r));
  }
  const closeMs = await Promise.race([
    closing,
    unrefSleep(20_000).then(() => -1),
  ]);
  const outcomes = await Promise.all(running);
  expect(closeMs).toBeGreaterThanOrEqual(0);
  expect(closeMs).toBeLessThan(15_000);
  const r = await verify(testRedisUrl(), P, D, outcomes);
  expect(r.problems).toEqual([]);
  expect(r.committed).toBeGreaterThan(0);
});

describe('with Redis paused past afterCommitTimeoutMs while the enqueues are in flight', () => {
  let redis: OwnRedis;
  beforeAll(async () => {
    redis = await startOwnRedis();
  });
  afterAll(async () => {
    redis?.resume();
    await redis?.stop();
  });

  it.each([
    ['one plain job per transaction (single after-commit step)', false],
    ['a plain job and an afterCommit hook per transaction (two steps)', true],
  ])(
    '%s: close() waits for the detached enqueues; every committed job in Redis',
    async (_t, withHook) => {
      const P = uniqueName('adv3-closep-p');
      const app = await createLibApp({
        queues: [{ name: P, bull: { url: redis.url } }],
        options: { afterCommitTimeoutMs: 500 },
        listen: false,
      });
      const host = app.get(TransactionHost);
      const q: TransactionAwareQueue<any> = app.get(
        getTransactionAwareQueueToken(P),
      );
      await (q.queue as any).isReady?.();
      await (q.queue as any).waitUntilReady?.();
      const tag = uniqueName('h');
      redis.pause();
      const ids = Array.from({ length: 10 }, (_, i) => `${tag}-${i}`);
      const t0 = Date.now();
      let closeMs = -1;
      try {
        await Promise.all(
          ids.map((id) =>
            host.withTransaction(async () => {
              await host.getRepository(Order).insert({ label: id });
              await q.add({}, { jobId: id });
              if (withHook) await host.afterCommit(() => undefined);
            }),
          ),
        );
        const callerMs = Date.now() - t0;
        expect(callerMs).toBeLessThan(2000);
        // close now; resume Redis 1.5 s later (a short blip, not an outage)
        const closing = app.close().then(
          () => Date.now() - t0,
          () => Date.now() - t0,
        );
        await sleep(1500);
        redis.resume();
        closeMs = await Promise.race([
          closing,
          unrefSleep(20_000).then(() => -1),
        ]);
      } finally {
        redis.resume();
      }
      expect(closeMs).toBeGreaterThan(0);
      const found = await jobsIn(redis.url, P, ids);
      const stats = { ...q.stats };
      expect({ missing: ids.filter((_, k) => !found[k]), stats }).toEqual({
        missing: [],
        stats: expect.objectContaining({ enqueued: 10 }),
      });
    },
  );
});

it.each([
  ['a single after-commit step (the job batch)', false],
  ['two after-commit steps (the job batch and an afterCommit hook)', true],
])(
  'slow diverter past afterCommitTimeoutMs, %s: close() waits for the detached enqueue; committed jobs in Redis',
  async (_t, withHook) => {
    const P = uniqueName('adv3-closediv-p');
    const DIVERTER = Symbol('slow diverter');
    const diverted: string[] = [];
    const app = await createLibApp({
      queues: [{ name: P, diverter: DIVERTER }],
      providers: [
        {
          provide: DIVERTER,
          useValue: {
            async divert(jobs: readonly any[]) {
              await sleep(1500);
              diverted.push(...jobs.map((j) => String(j.opts.jobId)));
              return jobs;
            },
          },
        },
      ],
      options: { afterCommitTimeoutMs: 500 },
      listen: false,
    });
    const host = app.get(TransactionHost);
    const q: TransactionAwareQueue<any> = app.get(
      getTransactionAwareQueueToken(P),
    );
    const tag = uniqueName('v');
    const ids = Array.from({ length: 5 }, (_, i) => `${tag}-${i}`);
    const t0 = Date.now();
    await Promise.all(
      ids.map((id) =>
        host.withTransaction(async () => {
          await host.getRepository(Order).insert({ label: id });
          await q.add({}, { jobId: id });
          if (withHook) await host.afterCommit(() => undefined);
        }),
      ),
    );
    const callerMs = Date.now() - t0;
    const closeMs = await app.close().then(() => Date.now() - t0);
    const divertedAtClose = diverted.length;
    await sleep(2000);
    const found = await jobsIn(testRedisUrl(), P, ids);
    expect({
      callerMsUnder1000: callerMs < 1000,
      closeWaitedForDiverter: closeMs >= 1500,
      divertedAtClose,
      missing: ids.filter((_, k) => !found[k]),
      stats: { ...q.stats },
    }).toEqual({
      callerMsUnder1000: true,
      closeWaitedForDiverter: true,
      divertedAtClose: 5,
      missing: [],
      stats: expect.objectContaining({ enqueued: 5, failed: 0 }),
    });
  },
);

it('no unhandled rejection or uncaught exception', async () => {
  await sleep(200);
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
});
