import { sleep, waitFor } from './support/cleanup';
import { expectNothingLost, finalCheck } from './support/checker';
import { FaultEnv } from './support/fault-env';
import { setUpTenant, startLoad, summarize } from './support/load';

describe('when Redis is paused (SIGSTOP) and resumed under load', () => {
  let env: FaultEnv;

  beforeAll(async () => {
    env = await FaultEnv.create('3');
  });

  afterAll(async () => {
    await env?.close();
  });

  it('should lose nothing and send no duplicate flood once Redis answers again', async () => {
    const app = await env.start('app');
    const tenant = await setUpTenant(app.url, env.sink.url, 20);
    const load = startLoad({
      tenant,
      baseUrl: () => app.url,
      total: Infinity,
      concurrency: 100,
      ratePerSec: 10,
    });
    await waitFor(
      () => load.results.length >= 25,
      'the first requests',
      30_000,
    );

    // Sockets stay open and commands are written, but nothing answers: worse than down.
    env.redis.pause();
    const pausedAt = Date.now();
    await sleep(8_000);
    env.redis.resume();
    const resumedAt = Date.now();
    await sleep(3_000);
    const results = await load.stop();

    const duringPause = results.filter(
      (r) => r.startedAt >= pausedAt && r.startedAt < resumedAt,
    );
    expect(duringPause.length).toBeGreaterThan(0);
    expect(summarize(results)).toEqual({ 201: results.length });

    const report = await finalCheck({
      test: '3 Redis paused',
      db: env.db,
      sink: env.sink,
      results,
      services: env.services,
      redis: env.redis,
    });
    expectNothingLost(report);
    expect(report.committedEvents).toBe(report.requests);
    // The fast path, the relay and the reconciler all re-add the same jobs once Redis answers;
    // job ids and the claim in Postgres make every one of them a single send.
    expect(report.duplicates).toBe(0);
    console.log(
      `fault 3: ${duringPause.length} request(s) sent while Redis was paused, ` +
        `slowest ${Math.max(...duringPause.map((r) => r.ms))} ms`,
    );
  });
});
