import { expectNothingLost, finalCheck } from './support/checker';
import { waitFor } from './support/cleanup';
import { FaultEnv } from './support/fault-env';
import { InjectorProcess } from './support/injector-process';
import { BALLAST_TYPE } from './support/injector';
import { LoadResult, setUpTenant, startLoad, Tenant } from './support/load';

/** How long the overload lasts (s): `OVERLOAD_SECONDS`, 60 by default. */
const OVERLOAD_SECONDS = Number(process.env.OVERLOAD_SECONDS ?? 60);
/**
 * How long the saturation phase lasts (s), its ramp included: 45 s, or half the overload if
 * longer. Measured over 30 s after its ramp: over 20 s, four runs of the same build measured
 * saturation rates from 254 to 312/s on one machine, too noisy a base for a 0.9x check.
 */
const SATURATION_SECONDS = Math.max(45, Math.round(OVERLOAD_SECONDS / 2));
/** The backlog whose drain gives a first estimate of the saturation rate. */
const BACKLOG = Number(process.env.OVERLOAD_BACKLOG ?? 2000);
/**
 * Deliveries received at the start of a phase that are not counted. The saturation phase
 * starts with no backlog, and delivers faster until one has built (a job that finds its
 * endpoint's slots taken is parked, then handed on): after a 10 s ramp, its 5 s rates still
 * rose for 10-15 s in most runs (e.g. 259, 297, 328, 339/s), not the steady state.
 */
const RAMP_MS = { saturation: 15_000, overload: 5000 };
/**
 * How long the drain of the overload's backlog is measured (ms, after `RAMP_MS.overload`):
 * `OVERLOAD_DRAIN_MEASURE_MS`, 20 s. The rest of the backlog drains with a receiver answering
 * at once (it would take minutes at the slots' pace).
 */
const DRAIN_MEASURE_MS = Number(
  process.env.OVERLOAD_DRAIN_MEASURE_MS ?? 20_000,
);

/**
 * Requests/s the API gets in both phases (`OVERLOAD_API_RATE`); the rest of the offered load
 * is written directly. On one small machine the API takes CPU from the worker: an API busier in
 * the overload than in the saturation phase would measure the machine, not the worker.
 */
const API_RATE = Number(process.env.OVERLOAD_API_RATE ?? 50);

/**
 * Node flags for the worker (`OVERLOAD_WORKER_FLAGS`, e.g. `--cpu-prof --cpu-prof-dir=/tmp/p`):
 * the worker then gets SIGTERM at the end, so that it exits and writes its profile (split it
 * by time with `node scripts/cpuprofile-windows.js`).
 */
const WORKER_FLAGS = process.env.OVERLOAD_WORKER_FLAGS;

/**
 * How long the receiver takes to answer (ms), per number of endpoints: `OVERLOAD_RECEIVER_MS`
 * (`0` answers at once). By default long enough that the saturation rate is set by the slots
 * (4 for one endpoint, the worker's 20 for ten: about 4 / 25 ms and 20 / 105 ms, 150-200/s),
 * well under what this 2-core machine's CPU allows (700-1,100/s with a receiver answering at
 * once): the rate then follows the receiver's timer, which the rest of the machine does not
 * slow down. Answering at once, the rate follows how quickly three busy processes wake each
 * other up, and on a shared 2-core machine that swung by 2x within a run and gave ratios of
 * 0.63-1.42 between runs of one build (bench/results/overload-2026-12-04-runs.txt): a
 * measurement, not a check.
 */
const RECEIVER_MS = (endpoints: number) =>
  Number(process.env.OVERLOAD_RECEIVER_MS ?? (endpoints === 1 ? 20 : 100));

/** The service's defaults (the fault harness shortens the intervals, not the concurrency). */
const DEFAULTS = { WORKER_CONCURRENCY: '20', PER_ENDPOINT_CONCURRENCY: '4' };

/** Commits and enqueues `n` deliveries (or ballast rows) spread evenly over the endpoints. */
async function injectSpread(
  injector: InjectorProcess,
  endpoints: number,
  n: number,
  ballast = false,
) {
  if (n <= 0) return;
  await injector.inject(
    Array.from(
      { length: endpoints },
      (_, i) => Math.floor(n / endpoints) + (i < n % endpoints ? 1 : 0),
    ),
    ballast,
  );
}

/**
 * The variants: one endpoint and ten, in the fault suite and with `npm run test:overload` (this
 * spec alone); `OVERLOAD_ENDPOINTS=10` (or `1`) picks one.
 */
const VARIANTS = (process.env.OVERLOAD_ENDPOINTS ?? '1,10')
  .split(',')
  .map(Number);

describe.each(VARIANTS)(
  'when more deliveries arrive than the worker can send (%i endpoint(s))',
  (endpoints) => {
    let env: FaultEnv;
    let injector: InjectorProcess | undefined;
    jest.setTimeout(300_000 + (OVERLOAD_SECONDS + SATURATION_SECONDS) * 3000);

    beforeAll(async () => {
      env = await FaultEnv.create(`overload_${endpoints}`);
    });

    afterAll(async () => {
      await injector?.close();
      await env?.close();
    });

    it('should keep sending at the saturation rate, then deliver everything once', async () => {
      const receiverMs = RECEIVER_MS(endpoints);
      env.sink.mode = receiverMs > 0 ? receiverMs : 'ok';
      const api = await env.start('api', { PROCESS_ROLE: 'api', ...DEFAULTS });
      // One account per endpoint, each with its trips: every event has one delivery.
      const tenants: Tenant[] = [];
      for (let i = 0; i < endpoints; i++) {
        const tenant = await setUpTenant(
          api.url,
          `${env.sink.url}?endpoint=${i}`,
          Math.max(2, 20 / endpoints),
        );
        tenants.push(tenant);
      }
      // The load beyond what the API takes, from a child at a low CPU priority: on this one
      // machine the generator must not take the CPU the worker needs (a heavier overload would
      // then measure the generator's cost, not the worker).
      const inj = await InjectorProcess.start(
        env.db.url,
        env.redis.url,
        tenants.map((tenant) => tenant.endpointId),
        Number(DEFAULTS.PER_ENDPOINT_CONCURRENCY),
      );
      injector = inj;
      const injected = () => inj.injected;

      // A first estimate: the drain rate of a backlog written while no worker runs.
      await injectSpread(inj, endpoints, BACKLOG);
      const worker = await env.start('worker', {
        PROCESS_ROLE: 'worker',
        ...DEFAULTS,
        ...(WORKER_FLAGS ? { SERVICE_NODE_FLAGS: WORKER_FLAGS } : {}),
      });
      await waitFor(() => env.sink.unique >= 1, 'the first delivery', 60_000);
      const drainStart = env.sink.requests[0].at;
      await waitFor(
        () => env.sink.unique >= BACKLOG,
        'the backlog to drain',
        600_000,
      );
      const drainMs =
        env.sink.requests[env.sink.requests.length - 1].at - drainStart;
      const drainRate = (1000 * (BACKLOG - 1)) / Math.max(1, drainMs);

      // Offered `rate` deliveries/s for `seconds`: the API gets `API_RATE` of it (and must
      // accept it all); the rest is written directly, so that the whole rate arrives at the
      // worker either way. Ballast rows make up the difference to `writeRate` rows/s: both phases
      // write as much, so that the machine spends as much CPU on arrivals in both (on one
      // machine, writing three times as many arrivals takes CPU from the worker: the overload
      // would measure the writer, not the worker). Delivered/s over the phase, after its ramp.
      const results: LoadResult[] = [];
      const offer = async (
        rate: number,
        writeRate: number,
        seconds: number,
        rampMs: number,
      ) => {
        const before = env.sink.total;
        const started = Date.now();
        const loads = tenants.map((tenant) =>
          startLoad({
            tenant,
            baseUrl: () => api.url,
            total: Infinity,
            concurrency: Math.max(2, 16 / endpoints),
            ratePerSec: Math.min(rate, API_RATE) / endpoints,
          }),
        );
        const injectedBefore = injected();
        const ballastBefore = inj.ballast;
        const accepted = () =>
          loads.reduce(
            (sum, load) =>
              sum + load.results.filter((r) => r.status === 201).length,
            0,
          );
        while (Date.now() - started < seconds * 1000) {
          const due = (rate * (Date.now() - started)) / 1000;
          await injectSpread(
            inj,
            endpoints,
            Math.floor(due - accepted() - (injected() - injectedBefore)),
          );
          await injectSpread(
            inj,
            endpoints,
            Math.floor(
              ((writeRate - rate) * (Date.now() - started)) / 1000 -
                (inj.ballast - ballastBefore),
            ),
            true,
          );
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
        const ended = Date.now();
        for (const load of loads) results.push(...(await load.stop()));
        const arrived = accepted() + injected() - injectedBefore;
        const received = env.sink.requests
          .slice(before)
          .filter((r) => r.at >= started + rampMs && r.at <= ended);
        const during = received.length;
        // Delivered/s in 5 s buckets: a trend inside a phase shows here, not in its mean.
        const buckets: number[] = [];
        for (const r of received) {
          const b = Math.floor((r.at - started - rampMs) / 5000);
          buckets[b] = (buckets[b] ?? 0) + 1;
        }
        // From the event's transaction to the receiver, for what arrived in the phase (in an
        // overload the backlog grows, and so does this: reported, not asserted).
        const created = new Map(
          (
            await env.db.query<{ id: string; at: number }>(
              `SELECT id, (extract(epoch FROM created_at) * 1000)::float8 AS at
                 FROM events WHERE id = ANY($1::uuid[])`,
              [received.map((r) => r.webhookId)],
            )
          ).map((row) => [row.id, row.at]),
        );
        const latencies = received
          .map((r) => r.at - (created.get(r.webhookId) ?? r.at))
          .sort((a, b) => a - b);
        const pct = (p: number) =>
          Math.round(latencies[Math.floor((latencies.length - 1) * p)] ?? 0);
        return {
          startedAt: started,
          endedAt: ended,
          latencyMs: { p50: pct(0.5), p99: pct(0.99) },
          offeredPerSec: +rate.toFixed(1),
          arrivedPerSec: +((1000 * arrived) / (ended - started)).toFixed(1),
          ballastPerSec: +(
            (1000 * (inj.ballast - ballastBefore)) /
            (ended - started)
          ).toFixed(1),
          acceptedByApiPerSec: +(
            (1000 * accepted()) /
            (ended - started)
          ).toFixed(1),
          deliveredPerSec: (1000 * during) / (ended - started - rampMs),
          perSecondBy5s: Array.from(buckets, (n) => (n ?? 0) / 5),
        };
      };

      // Saturation: what the service delivers with the API and the load busy, offered past the
      // knee: 1.5 times the drain rate with a receiver that takes its time (the slots set the
      // rate, and the backlog's drain measured it within 2%), 2.5 times with one that answers at
      // once (the CPU sets it, and the drain of a small backlog underestimates it: at 1.5 times
      // a faster worker kept up, 655 delivered of 658/s offered, which measured the offer, not
      // the saturation). Then three times that, and never less than 1.5 times what the
      // saturation phase offered (the overload must not be the lighter phase); then stop.
      // Both write twice the knee's offered rate, or the overload's if more (the saturation
      // rate is at most what the knee offered, so the overload offers at least 1.5 times the
      // knee's rate; it writes as much as the knee up to three times the saturation rate).
      const kneeOffered = (receiverMs > 0 ? 1.5 : 2.5) * drainRate;
      const knee = await offer(
        kneeOffered,
        2 * kneeOffered,
        SATURATION_SECONDS,
        RAMP_MS.saturation,
      );
      const saturation = knee.deliveredPerSec;
      const overloadOffered = Math.max(3 * saturation, 1.5 * kneeOffered);
      const overload = await offer(
        overloadOffered,
        Math.max(overloadOffered, 2 * kneeOffered),
        OVERLOAD_SECONDS,
        RAMP_MS.overload,
      );
      // The ballast goes (its deliveries with its events): the check counts deliveries.
      await env.db.query('DELETE FROM events WHERE type = $1', [BALLAST_TYPE]);
      const deliveredPerSec = overload.deliveredPerSec;
      // Printed before the final check, so that a run that times out there still reports them.
      const phase = ({ endedAt: _, ...rest }: typeof knee) => rest;
      console.log(
        JSON.stringify({
          endpoints,
          receiverMs,
          drainRate: +drainRate.toFixed(1),
          knee: phase(knee),
          overload: phase(overload),
          ratio: +(overload.deliveredPerSec / saturation).toFixed(2),
        }),
      );

      // The backlog the overload left, drained with nothing arriving: measured over
      // DRAIN_MEASURE_MS after a ramp, then the receiver answers at once, so that the rest
      // (tens of thousands of deliveries, minutes at the slots' pace) drains at the CPU's pace
      // for the final check, which still needs every one of them delivered once.
      const drainWindow = {
        from: overload.endedAt + RAMP_MS.overload,
        to: overload.endedAt + RAMP_MS.overload + DRAIN_MEASURE_MS,
      };
      await new Promise((resolve) =>
        setTimeout(resolve, Math.max(0, drainWindow.to - Date.now())),
      );
      env.sink.mode = 'ok';
      const report = await finalCheck({
        test: `overload: 3x the saturation rate, ${endpoints} endpoint(s)`,
        db: env.db,
        sink: env.sink,
        results,
        services: env.services,
        redis: env.redis,
        timeoutMs: 600_000,
      });
      const left = env.sink.requests.filter(
        (r) => r.at > drainWindow.from && r.at <= drainWindow.to,
      );
      // The window measured a backlog's drain, not its tail: deliveries were still left after it.
      const leftAfterWindow = env.sink.requests.filter(
        (r) => r.at > drainWindow.to,
      ).length;
      const drainAfter =
        left.length > 1
          ? (1000 * (left.length - 1)) /
            Math.max(1, left[left.length - 1].at - left[0].at)
          : 0;
      console.log(
        JSON.stringify({
          endpoints,
          drainAfter: {
            windowMs: DRAIN_MEASURE_MS,
            deliveries: left.length,
            leftAfterWindow,
            perSec: +drainAfter.toFixed(1),
          },
        }),
      );
      // The overload was offered (the generator kept up), and past saturation the worker keeps
      // its pace: waiting for a slot costs nothing.
      expect(overload.arrivedPerSec).toBeGreaterThanOrEqual(
        0.9 * overload.offeredPerSec,
      );
      // The saturation phase was past the knee (a backlog built): otherwise it measured the
      // offer, and the check below would compare with less than the worker can send.
      expect(knee.deliveredPerSec).toBeLessThan(0.95 * knee.arrivedPerSec);
      expect(deliveredPerSec).toBeGreaterThanOrEqual(0.9 * saturation);
      // The backlog the overload left drains at that rate too.
      expect(left.length).toBeGreaterThan(0);
      expect(leftAfterWindow).toBeGreaterThan(0);
      expect(drainAfter).toBeGreaterThanOrEqual(0.9 * saturation);
      expectNothingLost(report);
      // No worker died: every delivery reached the receiver exactly once.
      expect(report.duplicates).toBe(0);
      expect(report.interruptedAttempts).toBe(0);
      expect(report.committedEvents).toBeGreaterThanOrEqual(
        injected() + results.filter((r) => r.status === 201).length,
      );
      if (WORKER_FLAGS) await worker.kill('SIGTERM', 60_000);
    });
  },
);
