import { waitFor } from './support/cleanup';
import { expectNothingLost, finalCheck } from './support/checker';
import { FaultEnv } from './support/fault-env';
import { setUpTenant, startLoad } from './support/load';

const REQUESTS = 1_000;
const KILLS = 5;

describe('when the app is killed and restarted 5 times during a load of 1,000 delays', () => {
  let env: FaultEnv;

  beforeAll(async () => {
    env = await FaultEnv.create('8');
  });

  afterAll(async () => {
    await env?.close();
  });

  it('should deliver every committed event', async () => {
    const app = await env.start('app');
    const tenant = await setUpTenant(app.url, env.sink.url, 20);
    // A refused connection never reached the app, so it is sent again once the app is back;
    // a request in flight at a kill gets no answer and is not retried (it may have committed).
    const load = startLoad({
      tenant,
      baseUrl: () => app.url,
      total: REQUESTS,
      concurrency: 8,
      retryRefusedForMs: 120_000,
    });
    for (let kill = 1; kill <= KILLS; kill++) {
      // Kills spread over the load: after 1/7, 2/7, ... 5/7 of the requests.
      const settled = Math.round((kill * REQUESTS) / (KILLS + 2));
      await waitFor(
        () => load.results.length >= settled,
        `${settled} requests settled before kill ${kill}`,
        120_000,
      );
      await app.kill('SIGKILL');
      await app.restart();
    }
    const results = await load.done;
    expect(results).toHaveLength(REQUESTS);
    // Requests in flight at a kill, or sent on a pooled keep-alive socket the kill closed.
    const unanswered = results.filter((r) => r.status === 0);
    const errors: Record<string, number> = {};
    for (const r of unanswered) errors[r.error!] = (errors[r.error!] ?? 0) + 1;
    console.log(
      `fault 8: unanswered requests by error: ${JSON.stringify(errors)}`,
    );
    expect(unanswered.length).toBeLessThan(REQUESTS / 10);
    expect(results.filter((r) => r.status !== 0 && r.status !== 201)).toEqual(
      [],
    );

    const report = await finalCheck({
      test: '8 crash-loop (5 kills, 1,000 requests)',
      db: env.db,
      sink: env.sink,
      results,
      services: env.services,
      redis: env.redis,
      timeoutMs: 90_000,
    });
    expectNothingLost(report);
    expect(app.starts).toBe(KILLS + 1);
    expect(report.committedEvents).toBeGreaterThanOrEqual(report.answered2xx);
    expect(report.committedEvents).toBeLessThanOrEqual(REQUESTS);
  });
});
