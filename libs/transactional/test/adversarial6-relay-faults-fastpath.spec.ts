/**
 * adversarial6 (fast path): durable jobs with the fast path ON (graceMs 600 ms, fastPathTimeoutMs
 * 150 ms) and the relay polling, under REAL Redis faults on an own redis-server (AOF, appendfsync
 * always): SIGSTOP, SIGKILL + restart, CLIENT PAUSE ALL/WRITE, DEBUG SLEEP, memory full. Faults
 * are shorter than the lease (6 s) but often longer than the fast path's budget and than the
 * grace period, so the fast path's add in flight and the relay's hand-over of the same row both
 * reach Redis. Jobs are kept once processed (no removeOnComplete: the README's at-least-once
 * caveat is about removed jobs), so each committed job must be in Redis and run exactly once; a
 * rolled-back one never; outbox and queue stats must agree; no unhandled rejection.
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
  queueName: uniqueName('a6-fast'),
  table: `a6_fast_outbox_${process.pid}`,
  outbox: {
    markBatchDelayMs: 1,
    fastPathTimeoutMs: 150,
    relay: {
      graceMs: 600,
      leaseMs: 6000,
      redisTimeoutMs: 300,
      pollIntervalMs: 30,
      maxBackoffMs: 200,
      batchSize: 50,
    },
  },
  removeOnComplete: false,
});

afterAll(() => failures.dispose());

afterEach(() => {
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
});

const oneFault = faultArb({ min: 100, max: 1500 });

it('random Redis faults (some longer than the grace period) with the fast path on: each committed job in Redis and never run twice, no rolled-back job, callers answered fast, stats agree', async () => {
  let run = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(txArb, { minLength: 4, maxLength: 12 }),
      fc.array(oneFault, { minLength: 1, maxLength: 3 }),
      async (txs, faults) => {
        const tag = `f${run++}-${Date.now().toString(36)}`;
        const before = {
          relayed: h.outbox.relayStats.relayed,
          dropped: h.queue.stats.droppedOnRollback,
          deferred: h.queue.stats.deferred,
          enqueued: h.queue.stats.enqueued,
          leftToRelay: h.queue.stats.leftToRelay,
          dispatched: (await h.outbox.stats()).dispatched,
        };
        const { committed, dropped, answeredMs } = await h.scenario(
          tag,
          txs,
          faults,
        );
        // the fast path holds no caller longer than fastPathTimeoutMs (+ DB round trips)
        expect(Math.max(...answeredMs)).toBeLessThan(1500);
        await waitFor(
          () => h.allDelivered(committed),
          `${tag}: every committed job run`,
          25_000,
        ).catch(async (error) => {
          throw new Error(
            `${String(error)} (faults ${JSON.stringify(faults)}): ${await h.diagnose(committed.filter((id) => !h.runs.get(id)))}`,
          );
        });
        await waitFor(
          async () => (await h.pendingOf(tag)) === 0,
          `${tag}: outbox rows dispatched`,
          15_000,
        );
        await sleep(800);
        const notOnce = committed.filter((id) => (h.runs.get(id) ?? 0) > 1);
        expect({
          faults,
          notOnce: notOnce.map((id) => [id, h.runs.get(id)]),
        }).toEqual({
          faults,
          notOnce: [],
        });
        for (const id of committed) {
          expect([
            id,
            await h.redis.cli('EXISTS', `bull:${h.queueName}:${id}`),
          ]).toEqual([id, '1']);
        }
        for (const id of dropped) {
          expect([
            id,
            h.runs.has(id),
            await h.redis.cli('EXISTS', `bull:${h.queueName}:${id}`),
          ]).toEqual([id, false, '0']);
        }
        const stats = await h.outbox.stats();
        expect(stats).toMatchObject({ pending: 0, failing: 0, maxAttempts: 0 });
        expect(stats.dispatched - before.dispatched).toBe(committed.length);
        expect(h.queue.stats.droppedOnRollback - before.dropped).toBe(
          dropped.length,
        );
        expect(h.queue.stats.deferred - before.deferred).toBe(
          committed.length + dropped.length,
        );
        const relayed = h.outbox.relayStats.relayed - before.relayed;
        const left = h.queue.stats.leftToRelay - before.leftToRelay;
        const enqueued = h.queue.stats.enqueued - before.enqueued;
        // the relay takes only rows the fast path gave up on
        expect({ relayed, left }).toEqual({
          relayed: Math.min(relayed, left),
          left,
        });
        expect(left).toBeLessThanOrEqual(committed.length);
        expect(enqueued + left).toBeGreaterThanOrEqual(committed.length);
      },
    ),
    { numRuns: Number(process.env.A6_RUNS ?? 3), endOnFailure: true },
  );
});
