import { INestApplication } from '@nestjs/common';
import type { Queue } from 'bull';
import {
  getTransactionAwareQueueToken,
  TransactionAwareQueue,
  TransactionHost,
  TransactionRunner,
} from '../src';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  findJob,
  waitFor,
} from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';
import { watchProcessFailures } from './support/process-failures';

/**
 * adversarial5: user after-commit / after-rollback hooks that throw, reject, hang or return
 * odd thenables, mixed with jobs. README: "A failing hook is logged and counted; it never
 * turns a committed request into an error", "the caller waits at most afterCommitTimeoutMs
 * for all the after-commit work ... what is left then goes on in the background, in order".
 */
const PLAIN = uniqueName('a5-hooks-plain');
const DURABLE = uniqueName('a5-hooks-durable');
const TABLE = `a5_hooks_outbox_${process.pid}`;
const HOOK_TIMEOUT_MS = 300;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let app: INestApplication;
let host: TransactionHost;
let runner: TransactionRunner;
let plain: TransactionAwareQueue<any>;
let durable: TransactionAwareQueue<any>;
let plainBull: Queue;
let durableBull: Queue;
const failures = watchProcessFailures();

beforeAll(async () => {
  await createOutboxTable(TABLE);
  app = await createLibApp({
    queues: [{ name: PLAIN }, { name: DURABLE, durable: true }],
    options: {
      afterCommitTimeoutMs: HOOK_TIMEOUT_MS,
      outbox: {
        tableName: TABLE,
        markBatchDelayMs: 1,
        relay: { enabled: true, graceMs: 1000, pollIntervalMs: 50 },
      },
    },
    listen: false,
  });
  host = app.get(TransactionHost);
  runner = app.get(TransactionRunner);
  plain = app.get(getTransactionAwareQueueToken(PLAIN));
  durable = app.get(getTransactionAwareQueueToken(DURABLE));
  plainBull = bullQueue(app, PLAIN);
  durableBull = bullQueue(app, DURABLE);
});

afterAll(async () => {
  await closeLibApp(app, [PLAIN, DURABLE]);
  failures.dispose();
});

afterEach(() => {
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
});

it('hooks that throw, reject and hang between jobs: the caller resolves within the deadline, every job reaches Redis in the end', async () => {
  const before = { ...runner.stats };
  let release!: () => void;
  const hung = new Promise<void>((r) => (release = r));
  const started = Date.now();
  const ids = await host.withTransaction(async () => {
    const a = await plain.add({ n: 'a' });
    await host.afterCommit(() => {
      throw new Error('sync throw');
    });
    const b = await plain.add({ n: 'b' });
    await host.afterCommit(() => Promise.reject(new Error('async reject')));
    const c = await durable.add({ n: 'c' });
    await host.afterCommit(() => hung);
    const d = await plain.add({ n: 'd' });
    const e = await durable.add({ n: 'e' });
    return [a, b, c, d, e];
  });
  const waited = Date.now() - started;
  // One deadline for the whole phase (not per step), plus some slack for the database.
  expect(waited).toBeLessThan(HOOK_TIMEOUT_MS + 700);
  expect(
    runner.stats.hookFailures - before.hookFailures,
  ).toBeGreaterThanOrEqual(2);
  expect(runner.stats.hookPhasesDetached - before.hookPhasesDetached).toBe(1);
  // The jobs before the hung hook are there at once.
  expect((await findJob(plainBull, ids[0]))?.data).toEqual({ n: 'a' });
  expect((await findJob(plainBull, ids[1]))?.data).toEqual({ n: 'b' });
  expect((await findJob(durableBull, ids[2]))?.data).toEqual({ n: 'c' });
  // The jobs after it follow once the hung step times out (or through the relay, durable).
  await waitFor(
    async () =>
      (await findJob(plainBull, ids[3])) !== null &&
      (await findJob(durableBull, ids[4])) !== null,
    'the jobs registered after the hung hook',
    5000,
  );
  expect((await findJob(plainBull, ids[3]))?.data).toEqual({ n: 'd' });
  expect((await findJob(durableBull, ids[4]))?.data).toEqual({ n: 'e' });
  release();
});

it('an afterRollback hook that throws or hangs never replaces the caller error, and nothing is enqueued', async () => {
  const boom = new Error('business failure');
  let id = '';
  let durableId = '';
  const started = Date.now();
  await expect(
    host.withTransaction(async () => {
      id = await plain.add({ n: 'rolled-back' });
      durableId = await durable.add({ n: 'rolled-back' });
      host.afterRollback(() => {
        throw new Error('hook throws');
      });
      host.afterRollback(() => sleep(HOOK_TIMEOUT_MS * 3));
      throw boom;
    }),
  ).rejects.toBe(boom);
  expect(Date.now() - started).toBeLessThan(HOOK_TIMEOUT_MS + 700);
  await sleep(1300); // past graceMs: the relay would have taken a row
  expect(await findJob(plainBull, id)).toBeNull();
  expect(await findJob(durableBull, durableId)).toBeNull();
});

it('a single afterCommit hook returning a thenable whose then() throws does not turn the commit into an error', async () => {
  const before = runner.stats.hookFailures;
  const result = host.withTransaction(async () => {
    // The hook is the only after-commit step of the transaction.
    await host.afterCommit(() => ({
      then() {
        throw new Error('then() throws');
      },
    }));
    return 'committed';
  });
  await expect(result).resolves.toBe('committed');
  expect(runner.stats.hookFailures).toBe(before + 1);
});

it('a hook that adds a job after the commit enqueues it at once (no transaction bound)', async () => {
  let inner: Promise<string> | undefined;
  let active: boolean | undefined;
  await host.withTransaction(async () => {
    await host.afterCommit(() => {
      active = host.isActive;
      inner = plain.add({ n: 'from-hook' });
      return inner;
    });
  });
  expect(active).toBe(false);
  const id = await inner!;
  expect((await findJob(plainBull, id))?.data).toEqual({ n: 'from-hook' });
});
