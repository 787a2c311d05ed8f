import { waitFor } from './support/cleanup';
import { expectNothingLost, finalCheck } from './support/checker';
import { FaultEnv } from './support/fault-env';
import { LoadResult, setUpTenant, startLoad, summarize } from './support/load';
import type { ServiceProcess } from './support/service-process';

/** The shutdown budget the processes of this spec get (SHUTDOWN_TIMEOUT_MS). */
const SHUTDOWN_TIMEOUT_MS = 10_000;

/** Output lines of a process that report an error, or work failing for want of the runner. */
function errorLines(svc: ServiceProcess): string[] {
  return svc
    .output()
    .split('\n')
    .filter((line) => /\bERROR\b|not initialised/.test(line));
}

/** Sends `signal`; resolves with how the process ended and how long it took. */
async function stop(svc: ServiceProcess, signal: NodeJS.Signals = 'SIGTERM') {
  const started = Date.now();
  // A grace past the budget: a process that outlives it is SIGKILLed, and the exit says so.
  const exit = await svc.kill(signal, SHUTDOWN_TIMEOUT_MS + 5_000);
  return { ...exit, ms: Date.now() - started };
}

/** Requests sent before `at`, answered after it, never refused: in flight at that moment. */
function inFlightAt(results: LoadResult[], at: number): LoadResult[] {
  return results.filter(
    (r) => r.refused === 0 && r.startedAt < at && r.startedAt + r.ms > at,
  );
}

describe('when the API and a worker get SIGTERM under load', () => {
  let env: FaultEnv;

  beforeAll(async () => {
    env = await FaultEnv.create('sigterm');
  });

  afterAll(async () => {
    await env?.close();
  });

  it('should answer the requests in flight, finish the deliveries in flight, deliver every committed event and exit 0', async () => {
    const shared = {
      SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      PER_ENDPOINT_CONCURRENCY: '20',
    };
    const api = await env.start('api', { ...shared, PROCESS_ROLE: 'api' });
    const [workerA] = await Promise.all([
      env.start('worker-a', { ...shared, PROCESS_ROLE: 'worker' }),
      env.start('worker-b', { ...shared, PROCESS_ROLE: 'worker' }),
    ]);
    const tenant = await setUpTenant(api.url, env.sink.url, 20);
    // The receiver takes 300 ms per webhook: both workers are always mid-delivery.
    env.sink.mode = 300;
    let settled = 0;
    const load = startLoad({
      tenant,
      baseUrl: () => api.url,
      total: 400,
      concurrency: 8,
      // Refused while the API restarts: never reached it, so sent again.
      retryRefusedForMs: 60_000,
      onSettled: (n) => (settled = n),
    });

    await waitFor(() => settled >= 100, '100 requests answered', 60_000);
    const apiStoppedAt = Date.now();
    const apiExit = await stop(api);
    await api.restart();

    await waitFor(
      () => env.sink.total >= 150,
      '150 webhooks at the receiver',
      60_000,
    );
    const workerExit = await stop(workerA);

    const results = await load.done;
    const report = await finalCheck({
      test: 'sigterm: API and worker stopped under load',
      db: env.db,
      sink: env.sink,
      results,
      services: env.services,
      redis: env.redis,
    });

    expect(results.filter((r) => r.status !== 201)).toEqual([]);
    expect(summarize(results)).toEqual({ 201: 400 });
    // Requests in flight when the API got SIGTERM were answered, not cut off.
    const inFlight = inFlightAt(results, apiStoppedAt);
    expect(inFlight.length).toBeGreaterThan(0);
    expect(inFlight.filter((r) => r.status !== 201)).toEqual([]);
    expect(apiExit).toMatchObject({ code: 0, signal: null });
    expect(apiExit.ms).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
    expect(workerExit).toMatchObject({ code: 0, signal: null });
    expect(workerExit.ms).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
    // The worker had deliveries in flight and waited for them.
    expect(workerA.logSum(/waiting for (\d+) delivery job/)).toBeGreaterThan(0);

    expectNothingLost(report);
    expect(report.committedEvents).toBe(400);
    // No delivery was left in `sending` to be taken over after its lease: none was interrupted
    // and none sent twice.
    expect(report.interruptedAttempts).toBe(0);
    expect(report.duplicates).toBe(0);
    for (const svc of env.services) expect(errorLines(svc)).toEqual([]);
  });
});

describe('when the combined process gets SIGTERM while the receiver is slow', () => {
  let env: FaultEnv;

  beforeAll(async () => {
    env = await FaultEnv.create('sigterm_slow');
  });

  afterAll(async () => {
    await env?.close();
  });

  it('should finish the deliveries in flight, record them as succeeded and exit 0', async () => {
    const app = await env.start('app', {
      SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      WEBHOOK_TIMEOUT_MS: '5000',
    });
    const tenant = await setUpTenant(app.url, env.sink.url, 3);
    // The receiver answers each webhook 2 s after it has read it.
    env.sink.mode = 2000;
    const results = await startLoad({
      tenant,
      baseUrl: () => app.url,
      total: 3,
      concurrency: 3,
    }).done;
    expect(summarize(results)).toEqual({ 201: 3 });
    await waitFor(
      () => env.sink.total >= 3,
      'three webhooks at the receiver',
      15_000,
      undefined,
      20,
    );

    const exit = await stop(app);

    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(exit.ms).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
    const rows = await env.db.query(
      `SELECT d.status, d.attempt_count, a.status AS attempt, a.status_code
         FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id`,
    );
    const succeeded = {
      status: 'succeeded',
      attempt_count: 1,
      attempt: 'succeeded',
      status_code: 200,
    };
    expect(rows).toEqual([succeeded, succeeded, succeeded]);
    expect([...env.sink.counts.values()]).toEqual([1, 1, 1]);
    expect(errorLines(app)).toEqual([]);
  });

  it('should stop the same way on SIGINT', async () => {
    const [app] = env.services;
    await app.restart();
    const tenant = await setUpTenant(app.url, env.sink.url, 1);
    env.sink.mode = 2000;
    const before = env.sink.total;
    const results = await startLoad({
      tenant,
      baseUrl: () => app.url,
      total: 1,
      concurrency: 1,
    }).done;
    expect(summarize(results)).toEqual({ 201: 1 });
    await waitFor(
      () => env.sink.total > before,
      'the webhook at the receiver',
      15_000,
      undefined,
      20,
    );

    const exit = await stop(app, 'SIGINT');

    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(exit.ms).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
    expect(
      await env.db.query(
        `SELECT d.status, a.status AS attempt FROM deliveries d
           JOIN delivery_attempts a ON a.delivery_id = d.id
          WHERE d.event_id = $1`,
        [results[0].eventId],
      ),
    ).toEqual([{ status: 'succeeded', attempt: 'succeeded' }]);
    expect(errorLines(app)).toEqual([]);
  });
});

describe('when a worker gets SIGTERM and its delivery outlives SHUTDOWN_TIMEOUT_MS', () => {
  let env: FaultEnv;

  beforeAll(async () => {
    env = await FaultEnv.create('sigterm_timeout');
  });

  afterAll(async () => {
    await env?.close();
  });

  it('should give up after the timeout, record the attempt as aborted, exit 1, and send it again later', async () => {
    const api = await env.start('api', { PROCESS_ROLE: 'api' });
    const tenant = await setUpTenant(api.url, env.sink.url, 1);
    // The receiver never answers; the attempt would time out after 10 s, the stop after 1 s.
    env.sink.mode = 'hold';
    const worker = await env.start('worker', {
      PROCESS_ROLE: 'worker',
      SHUTDOWN_TIMEOUT_MS: '1000',
      WEBHOOK_TIMEOUT_MS: '10000',
    });
    const results = await startLoad({
      tenant,
      baseUrl: () => api.url,
      total: 1,
      concurrency: 1,
    }).done;
    await waitFor(
      () => env.sink.held.length >= 1,
      'the webhook at the receiver',
      15_000,
      undefined,
      20,
    );

    const exit = await stop(worker);

    expect(exit).toMatchObject({ code: 1, signal: null });
    expect(exit.ms).toBeGreaterThanOrEqual(1000);
    expect(exit.ms).toBeLessThan(5000);
    expect(worker.output()).toMatch(/gave up after \d+ ms/);
    // Not left `sending`: the attempt is recorded, the delivery is due again.
    expect(
      await env.db.query(
        `SELECT d.status, a.status AS attempt, a.error_class
           FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id`,
      ),
    ).toEqual([
      { status: 'pending', attempt: 'failed', error_class: 'aborted' },
    ]);

    env.sink.mode = 'ok';
    env.sink.releaseHeld();
    await worker.restart();
    const report = await finalCheck({
      test: 'sigterm: delivery outlives the shutdown timeout',
      db: env.db,
      sink: env.sink,
      results,
      services: env.services,
      redis: env.redis,
    });
    expectNothingLost(report);
    expect(report.committedEvents).toBe(1);
    expect(report.attempts).toBe(2);
    expect(report.interruptedAttempts).toBe(0);
  });
});
