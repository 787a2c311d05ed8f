/**
 * adversarial6: the outbox relay under REAL Redis faults (own redis-server, AOF with
 * `appendfsync always`, so a kill and restart on the same port loses nothing Redis answered):
 * SIGSTOP/SIGCONT, SIGKILL + restart, `CLIENT PAUSE ... ALL` / `WRITE`, `DEBUG SLEEP`, memory
 * full (`maxmemory` + noeviction). Relay-only mode (`graceMs` 0: README "with 0 every durable job
 * is relayed"), jobs `removeOnComplete`, so a second hand-over of a job would make it run again.
 *
 * README promise checked: every job of a committed transaction reaches Redis and runs exactly
 * once while every fault is far shorter than the relay lease (`leaseMs`: "only a reply later than
 * the whole lease lets the next relay enqueue the job again"); a job of a rolled-back transaction
 * never runs; no unhandled rejection / uncaught exception; outbox and relay stats agree.
 */
import * as fc from 'fast-check';
import { uniqueName } from './support/env';
import { waitFor } from './support/lib-app';
import { watchProcessFailures } from './support/process-failures';
import {
  faultArb,
  relayFaultHarness,
  txArb,
} from './support/relay-fault-harness';

jest.setTimeout(90_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const failures = watchProcessFailures();
const h = relayFaultHarness({
  queueName: uniqueName('a6-relay'),
  table: `a6_relay_outbox_${process.pid}`,
  outbox: {
    markBatchDelayMs: 1,
    relay: {
      graceMs: 0,
      leaseMs: 6000,
      redisTimeoutMs: 300,
      pollIntervalMs: 30,
      maxBackoffMs: 200,
      batchSize: 50,
    },
  },
  removeOnComplete: true,
});

afterAll(() => failures.dispose());

afterEach(() => {
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
});

// every fault far shorter than the lease (6 s), most longer than redisTimeoutMs (300 ms)
const oneFault = faultArb({ min: 150, max: 1200 });

it('random Redis faults shorter than the lease while transactions commit durable jobs: each committed job reaches Redis and never runs twice, no rolled-back job ever, stats agree', async () => {
  let run = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(txArb, { minLength: 4, maxLength: 12 }),
      fc.array(oneFault, { minLength: 1, maxLength: 3 }),
      async (txs, faults) => {
        const tag = `r${run++}-${Date.now().toString(36)}`;
        const before = {
          relayed: h.outbox.relayStats.relayed,
          dropped: h.queue.stats.droppedOnRollback,
          deferred: h.queue.stats.deferred,
          dispatched: (await h.outbox.stats()).dispatched,
        };
        const { committed, dropped } = await h.scenario(tag, txs, faults);
        await waitFor(
          () => h.allDelivered(committed),
          `${tag}: every committed job run`,
          25_000,
        ).catch(async (error) => {
          throw new Error(
            `${String(error)}: ${await h.diagnose(committed.filter((id) => !h.runs.get(id)))}`,
          );
        });
        await waitFor(
          async () => (await h.pendingOf(tag)) === 0,
          `${tag}: outbox rows dispatched`,
          15_000,
        );
        // time for a late or second hand-over to show up as a second run
        await sleep(800);
        const twice = committed.filter((id) => (h.runs.get(id) ?? 0) > 1);
        expect({
          faults,
          twice: twice.map((id) => [id, h.runs.get(id)]),
        }).toEqual({
          faults,
          twice: [],
        });
        expect(dropped.filter((id) => h.runs.has(id))).toEqual([]);
        const stats = await h.outbox.stats();
        expect(stats).toMatchObject({ pending: 0, failing: 0, maxAttempts: 0 });
        expect(stats.dispatched - before.dispatched).toBe(committed.length);
        expect(h.queue.stats.droppedOnRollback - before.dropped).toBe(
          dropped.length,
        );
        expect(h.queue.stats.deferred - before.deferred).toBe(
          committed.length + dropped.length,
        );
        // relay-only, every fault inside the lease: each row is handed over (and counted) once
        expect(h.outbox.relayStats.relayed - before.relayed).toBe(
          committed.length,
        );
      },
    ),
    { numRuns: Number(process.env.A6_RUNS ?? 3), endOnFailure: true },
  );
});

it('memory full (maxmemory, noeviction): rows stay pending with the OOM error in stats(), nothing runs; once memory is freed every committed job runs once', async () => {
  const tag = `oom-${Date.now().toString(36)}`;
  const info = await h.redis.cli('INFO', 'memory');
  const used = Number(/used_memory:(\d+)/.exec(info)![1]);
  await h.redis.cli('CONFIG', 'SET', 'maxmemory', String(used + 64 * 1024));
  await h.redis.cli('SETRANGE', 'adv6-filler', String(512 * 1024), 'x');
  let result: { committed: string[]; dropped: string[] };
  try {
    result = await h.scenario(
      tag,
      Array.from({ length: 8 }, (_, i) => ({
        startMs: 0,
        jobs: 2,
        commit: i % 3 !== 2,
      })),
      [],
    );
    await waitFor(
      async () => (await h.outbox.stats()).failing >= result.committed.length,
      'relay attempts recorded',
      10_000,
    );
    const stats = await h.outbox.stats();
    expect(stats.pending).toBe(result.committed.length);
    expect(stats.lastError?.message).toMatch(/OOM|maxmemory|EXECABORT/i);
    expect(result.committed.filter((id) => h.runs.has(id))).toEqual([]);
  } finally {
    await h.redis.cli('DEL', 'adv6-filler');
    await h.redis.cli('CONFIG', 'SET', 'maxmemory', '0');
  }
  await waitFor(
    () => result.committed.every((id) => h.runs.get(id) === 1),
    'every committed job run after memory is freed',
    20_000,
  );
  await waitFor(async () => (await h.pendingOf(tag)) === 0, 'drained', 10_000);
  await sleep(500);
  expect(result.committed.filter((id) => h.runs.get(id) !== 1)).toEqual([]);
  expect(result.dropped.filter((id) => h.runs.has(id))).toEqual([]);
  expect(await h.outbox.stats()).toMatchObject({ pending: 0, failing: 0 });
});

it('a storm of dropped connections (CLIENT KILL every few ms for 3 s) while 40 transactions commit: each committed job reaches Redis and never runs twice', async () => {
  const tag = `ck-${Date.now().toString(36)}`;
  const before = { relayed: h.outbox.relayStats.relayed };
  const connections = async () =>
    Number(
      /total_connections_received:(\d+)/.exec(
        await h.redis.cli('INFO', 'stats'),
      )![1],
    );
  const connectionsBefore = await connections();
  const txs = Array.from({ length: 40 }, (_, i) => ({
    startMs: i * 70,
    jobs: 1 + (i % 3),
    commit: i % 5 !== 4,
  }));
  const { committed, dropped } = await h.scenario(tag, txs, [
    { kind: 'client-kill', atMs: 0, ms: 3000 },
  ]);
  await waitFor(
    () => h.allDelivered(committed),
    `${tag}: every committed job run`,
    25_000,
  ).catch(async (error) => {
    throw new Error(
      `${String(error)}: ${await h.diagnose(committed.filter((id) => !h.runs.get(id)))}`,
    );
  });
  await waitFor(async () => (await h.pendingOf(tag)) === 0, 'drained', 15_000);
  await sleep(800);
  expect(
    committed
      .filter((id) => (h.runs.get(id) ?? 0) > 1)
      .map((id) => [id, h.runs.get(id)]),
  ).toEqual([]);
  expect(await h.allDelivered(committed)).toBe(true);
  expect(dropped.filter((id) => h.runs.has(id))).toEqual([]);
  expect(h.outbox.relayStats.relayed - before.relayed).toBe(committed.length);
  // the storm did drop the clients, which connected again (else this case proves nothing); whether
  // a relay poll was among the calls it broke depends on timing, so it is not asserted
  expect((await connections()) - connectionsBefore).toBeGreaterThan(10);
});
