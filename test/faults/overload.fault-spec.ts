import { expectNothingLost, finalCheck } from './support/checker';
import { waitFor } from './support/cleanup';
import { FaultEnv } from './support/fault-env';
import { DeliveryInjector } from './support/injector';
import { LoadResult, setUpTenant, startLoad, Tenant } from './support/load';

/** How long the overload lasts (s): `OVERLOAD_SECONDS`, 60 by default. */
const OVERLOAD_SECONDS = Number(process.env.OVERLOAD_SECONDS ?? 60);
/** The backlog whose drain gives a first estimate of the saturation rate. */
const BACKLOG = Number(process.env.OVERLOAD_BACKLOG ?? 2000);
/** How long the saturation rate is measured (s). */
const SATURATION_SECONDS = Math.max(20, Math.round(OVERLOAD_SECONDS / 3));
/** Deliveries received at the start of a phase that are not counted (ramp-up). */
const RAMP_MS = 5000;

/** The service's defaults (the fault harness shortens the intervals, not the concurrency). */
const DEFAULTS = { WORKER_CONCURRENCY: '20', PER_ENDPOINT_CONCURRENCY: '4' };

/** Commits and enqueues `n` deliveries spread evenly over the injectors' endpoints. */
async function injectSpread(injectors: DeliveryInjector[], n: number) {
  if (n <= 0) return;
  await Promise.all(
    injectors.map((injector, i) =>
      injector.inject(
        Math.floor(n / injectors.length) + (i < n % injectors.length ? 1 : 0),
      ),
    ),
  );
}

describe.each([1, 10])(
  'when more deliveries arrive than the worker can send (%i endpoint(s))',
  (endpoints) => {
    let env: FaultEnv;
    const injectors: DeliveryInjector[] = [];
    jest.setTimeout(300_000 + (OVERLOAD_SECONDS + SATURATION_SECONDS) * 3000);

    beforeAll(async () => {
      env = await FaultEnv.create(`overload_${endpoints}`);
    });

    afterAll(async () => {
      await Promise.all(injectors.map((injector) => injector.close()));
      await env?.close();
    });

    it('should keep sending at the saturation rate, then deliver everything once', async () => {
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
        injectors.push(
          new DeliveryInjector(env.db, env.redis.url, tenant.endpointId),
        );
      }
      const injected = () =>
        injectors.reduce((sum, injector) => sum + injector.injected, 0);

      // A first estimate: the drain rate of a backlog written while no worker runs.
      await injectSpread(injectors, BACKLOG);
      await env.start('worker', { PROCESS_ROLE: 'worker', ...DEFAULTS });
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

      // Offered `rate` deliveries/s for `seconds`: the API gets all of it; what it does not
      // accept in time (on a small machine the API is slower than the worker) is written
      // directly, so that the whole rate arrives at the worker either way. Delivered/s over the
      // phase, after its ramp.
      const results: LoadResult[] = [];
      const offer = async (rate: number, seconds: number) => {
        const before = env.sink.total;
        const started = Date.now();
        const loads = tenants.map((tenant) =>
          startLoad({
            tenant,
            baseUrl: () => api.url,
            total: Infinity,
            concurrency: Math.max(4, 64 / endpoints),
            ratePerSec: rate / endpoints,
          }),
        );
        const injectedBefore = injected();
        const accepted = () =>
          loads.reduce(
            (sum, load) =>
              sum + load.results.filter((r) => r.status === 201).length,
            0,
          );
        while (Date.now() - started < seconds * 1000) {
          const due = (rate * (Date.now() - started)) / 1000;
          await injectSpread(
            injectors,
            Math.floor(due - accepted() - (injected() - injectedBefore)),
          );
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
        const ended = Date.now();
        for (const load of loads) results.push(...(await load.stop()));
        const received = env.sink.requests
          .slice(before)
          .filter((r) => r.at >= started + RAMP_MS && r.at <= ended);
        const during = received.length;
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
          latencyMs: { p50: pct(0.5), p99: pct(0.99) },
          offeredPerSec: +rate.toFixed(1),
          acceptedByApiPerSec: +(
            (1000 * accepted()) /
            (ended - started)
          ).toFixed(1),
          deliveredPerSec: (1000 * during) / (ended - started - RAMP_MS),
        };
      };

      // Saturation: what the service delivers with the API and the load as busy as they will
      // be, offered 1.5 times the drain rate (past the knee); then three times that, then stop.
      const knee = await offer(1.5 * drainRate, SATURATION_SECONDS);
      const saturation = knee.deliveredPerSec;
      const overload = await offer(3 * saturation, OVERLOAD_SECONDS);
      console.log(
        JSON.stringify({
          endpoints,
          drainRate: +drainRate.toFixed(1),
          knee,
          overload,
          ratio: +(overload.deliveredPerSec / saturation).toFixed(2),
        }),
      );
      const deliveredPerSec = overload.deliveredPerSec;

      const report = await finalCheck({
        test: `overload: 3x the saturation rate, ${endpoints} endpoint(s)`,
        db: env.db,
        sink: env.sink,
        results,
        services: env.services,
        redis: env.redis,
        timeoutMs: 600_000,
      });
      // Past saturation the worker keeps its pace: waiting for a slot costs nothing.
      expect(deliveredPerSec).toBeGreaterThanOrEqual(0.9 * saturation);
      expectNothingLost(report);
      // No worker died: every delivery reached the receiver exactly once.
      expect(report.duplicates).toBe(0);
      expect(report.interruptedAttempts).toBe(0);
      expect(report.committedEvents).toBeGreaterThanOrEqual(
        injected() + results.filter((r) => r.status === 201).length,
      );
    });
  },
);
