import { waitFor } from './support/cleanup';
import { expectNothingLost, finalCheck } from './support/checker';
import { FaultEnv } from './support/fault-env';
import { setUpTenant, startLoad, summarize } from './support/load';

describe('when the worker process is SIGKILLed mid-delivery', () => {
  let env: FaultEnv;

  beforeAll(async () => {
    env = await FaultEnv.create('6');
  });

  afterAll(async () => {
    await env?.close();
  });

  it('should retry the interrupted deliveries with the same webhook-id', async () => {
    const api = await env.start('api', { PROCESS_ROLE: 'api' });
    const tenant = await setUpTenant(api.url, env.sink.url, 10);
    // The receiver takes requests and never answers: the worker is mid-delivery.
    env.sink.mode = 'hold';
    const results = await startLoad({
      tenant,
      baseUrl: () => api.url,
      total: 20,
      concurrency: 5,
    }).done;
    expect(summarize(results)).toEqual({ 201: 20 });

    // A request timeout of 5 s (lease 15 s): the kill lands well inside it.
    const worker = await env.start('worker', {
      PROCESS_ROLE: 'worker',
      PER_ENDPOINT_CONCURRENCY: '4',
      WEBHOOK_TIMEOUT_MS: '5000',
    });
    // Killed once the endpoint's 4 slots are in flight.
    await waitFor(
      () => env.sink.held.length >= 4,
      'four deliveries in flight',
      30_000,
      undefined,
      20,
    );
    await worker.kill('SIGKILL');
    const interrupted = env.sink.held.map((h) => h.webhookId);
    env.sink.mode = 'ok';
    env.sink.releaseHeld();

    await worker.restart();
    const report = await finalCheck({
      test: '6 worker SIGKILLed mid-delivery',
      db: env.db,
      sink: env.sink,
      results,
      services: env.services,
      redis: env.redis,
    });
    expectNothingLost(report);
    expect(report.committedEvents).toBe(20);
    // Each interrupted delivery was sent again, with the same webhook-id; nothing else was.
    for (const id of interrupted) expect(env.sink.counts.get(id)).toBe(2);
    expect(report.duplicates).toBe(interrupted.length);
    expect(report.interruptedAttempts).toBe(interrupted.length);
  });
});
