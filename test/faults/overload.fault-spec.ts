import { expectNothingLost, finalCheck } from './support/checker';
import { waitFor } from './support/cleanup';
import { FaultEnv } from './support/fault-env';
import { DeliveryInjector } from './support/injector';
import { setUpTenant, startLoad } from './support/load';

/** How long the overload lasts (s): `OVERLOAD_SECONDS`, 60 by default. */
const OVERLOAD_SECONDS = Number(process.env.OVERLOAD_SECONDS ?? 60);
/** The backlog whose drain measures the saturation rate. */
const BACKLOG = Number(process.env.OVERLOAD_BACKLOG ?? 2000);
/** Deliveries received at the start of the overload that are not counted (ramp-up). */
const RAMP_MS = 5000;

/** The service's defaults (the fault harness shortens the intervals, not the concurrency). */
const DEFAULTS = { WORKER_CONCURRENCY: '20', PER_ENDPOINT_CONCURRENCY: '4' };

describe('when more deliveries arrive than the worker can send (one endpoint)', () => {
  let env: FaultEnv;
  let injector: DeliveryInjector | undefined;
  jest.setTimeout(240_000 + OVERLOAD_SECONDS * 3000);

  beforeAll(async () => {
    env = await FaultEnv.create('overload');
  });

  afterAll(async () => {
    await injector?.close();
    await env?.close();
  });

  it('should keep sending at the saturation rate, then deliver everything once', async () => {
    const api = await env.start('api', { PROCESS_ROLE: 'api', ...DEFAULTS });
    const tenant = await setUpTenant(api.url, env.sink.url, 20);
    injector = new DeliveryInjector(env.db, env.redis.url, tenant.endpointId);

    // Saturation: the drain rate of a backlog written while no worker runs.
    await injector.inject(BACKLOG);
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
    const saturation = (1000 * (BACKLOG - 1)) / Math.max(1, drainMs);

    // Overload: three times that rate offered for OVERLOAD_SECONDS, then nothing. The API
    // gets all of it; what it does not accept in time (on a small machine the API is slower
    // than the worker) is written directly, so that 3x arrives at the worker either way.
    const offered = 3 * saturation;
    const before = env.sink.total;
    const started = Date.now();
    const load = startLoad({
      tenant,
      baseUrl: () => api.url,
      total: Infinity,
      concurrency: 64,
      ratePerSec: offered,
    });
    const beforeInjected = injector.injected;
    const accepted = () => load.results.filter((r) => r.status === 201).length;
    while (Date.now() - started < OVERLOAD_SECONDS * 1000) {
      const due = (offered * (Date.now() - started)) / 1000;
      await injector.inject(
        Math.floor(due - accepted() - (injector.injected - beforeInjected)),
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const ended = Date.now();
    const results = await load.stop();
    const during = env.sink.requests
      .slice(before)
      .filter((r) => r.at >= started + RAMP_MS && r.at <= ended).length;
    const deliveredPerSec = (1000 * during) / (ended - started - RAMP_MS);
    console.log(
      JSON.stringify({
        overloadSeconds: OVERLOAD_SECONDS,
        saturation: +saturation.toFixed(1),
        offeredPerSec: +offered.toFixed(1),
        acceptedByApiPerSec: +((1000 * accepted()) / (ended - started)).toFixed(
          1,
        ),
        injectedPerSec: +(
          (1000 * (injector.injected - beforeInjected)) /
          (ended - started)
        ).toFixed(1),
        deliveredPerSec: +deliveredPerSec.toFixed(1),
        ratio: +(deliveredPerSec / saturation).toFixed(2),
      }),
    );

    const report = await finalCheck({
      test: 'overload: 3x the saturation rate',
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
      injector.injected + results.filter((r) => r.status === 201).length,
    );
  });
});
