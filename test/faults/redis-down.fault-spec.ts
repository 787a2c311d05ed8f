import { sleep, waitFor } from './support/cleanup';
import { expectNothingLost, finalCheck } from './support/checker';
import { FaultEnv } from './support/fault-env';
import { setUpTenant, startLoad, summarize } from './support/load';

describe('when Redis is down while requests keep coming', () => {
  let env: FaultEnv;

  beforeAll(async () => {
    env = await FaultEnv.create('2');
  });

  afterAll(async () => {
    await env?.close();
  });

  it('should answer every request 2xx and deliver everything once Redis is back', async () => {
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

    await env.redis.kill('SIGKILL');
    const downAt = Date.now();
    await sleep(6_000);
    await env.redis.restart();
    const upAt = Date.now();
    await sleep(2_000);
    const results = await load.stop();

    const duringOutage = results.filter(
      (r) => r.startedAt >= downAt && r.startedAt < upAt,
    );
    expect(duringOutage.length).toBeGreaterThan(0);
    expect(summarize(results)).toEqual({ 201: results.length });

    const report = await finalCheck({
      test: '2 Redis down',
      db: env.db,
      sink: env.sink,
      results,
      services: env.services,
      redis: env.redis,
    });
    expectNothingLost(report);
    expect(report.answered2xx).toBe(report.requests);
    expect(report.committedEvents).toBe(report.requests);
    console.log(
      `fault 2: ${duringOutage.length} request(s) sent while Redis was down, ` +
        `slowest ${Math.max(...duringOutage.map((r) => r.ms))} ms`,
    );
  });
});
