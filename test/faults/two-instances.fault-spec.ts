import { expectNothingLost, finalCheck } from './support/checker';
import { FaultEnv } from './support/fault-env';
import { setUpTenant, startLoad, summarize } from './support/load';

describe('when two app processes, each with a relay and a worker, share the load', () => {
  let env: FaultEnv;

  beforeAll(async () => {
    env = await FaultEnv.create('7');
  });

  afterAll(async () => {
    await env?.close();
  });

  it('should lose no delivery and send none twice', async () => {
    // A grace of 1 ms sends both relays after every row the fast path has not marked yet
    // (it marks in batches, 25 ms later): relays race each other and the fast path.
    const shared = { WORKER_CONCURRENCY: '5', OUTBOX_GRACE_MS: '1' };
    const [a, b] = await Promise.all([
      env.start('app-a', shared),
      env.start('app-b', shared),
    ]);
    const tenant = await setUpTenant(a.url, env.sink.url, 20);
    const results = await startLoad({
      tenant,
      baseUrl: (i) => (i % 2 === 0 ? a.url : b.url),
      total: 400,
      concurrency: 10,
    }).done;
    expect(summarize(results)).toEqual({ 201: 400 });

    const report = await finalCheck({
      test: '7 two processes, two relays, two workers',
      db: env.db,
      sink: env.sink,
      results,
      services: env.services,
      redis: env.redis,
    });
    expectNothingLost(report);
    expect(report.committedEvents).toBe(400);
    // Both relays took part; the job ids and the claim turned every re-dispatch into a no-op.
    const relayedA = a.logSum(/relayed (\d+) job\(s\)/);
    const relayedB = b.logSum(/relayed (\d+) job\(s\)/);
    console.log(
      `fault 7: relayed by a ${relayedA}, by b ${relayedB}; duplicates ${report.duplicates}`,
    );
    expect(relayedA).toBeGreaterThan(0);
    expect(relayedB).toBeGreaterThan(0);
    expect(report.duplicates).toBe(0);
  });
});
