import request from 'supertest';
import { OwnRedis, startOwnRedis } from './faults/support/own-redis';
import {
  ADMIN_TOKEN,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import { failOnProcessCrashes } from './support/process-crashes';

/**
 * The operational routes while the app's Redis (a redis-server of this spec's own, on a free
 * port: the shared one is never touched) is paused (SIGSTOP: sockets open, no answer) or
 * killed. Readiness must say so quickly; metrics and the dashboard must keep answering: an
 * operator needs them most while Redis is in trouble.
 */

const ADMIN = { authorization: `Bearer ${ADMIN_TOKEN}` };

/** Status and time of one GET, or `timeout` after `ms`. */
async function probe(
  url: string,
  path: string,
  ms: number,
  headers: Record<string, string> = {},
) {
  const started = Date.now();
  try {
    const res = await request(url).get(path).set(headers).timeout(ms);
    return { status: res.status, ms: Date.now() - started, text: res.text };
  } catch (error) {
    const status = (error as { timeout?: number }).timeout
      ? 'timeout'
      : String(error);
    return { status, ms: Date.now() - started, text: '' };
  }
}

describe('when the Redis of an API process is paused or killed', () => {
  failOnProcessCrashes();
  let redis: OwnRedis;
  let svc: E2eApp;

  beforeAll(async () => {
    redis = await startOwnRedis();
    svc = await startE2eApp({
      role: 'api',
      redisUrl: redis.url,
      healthCheckTimeoutMs: 1000,
    });
    await request(svc.url).get('/metrics').set(ADMIN).expect(200);
  });

  afterAll(async () => {
    redis?.resume();
    if (redis && redis.pid === undefined) await redis.restart();
    await svc?.close();
    await redis?.stop();
  });

  describe('paused (SIGSTOP)', () => {
    beforeAll(() => redis.pause());
    afterAll(async () => {
      redis.resume();
      await eventually(
        async () =>
          (await probe(svc.url, '/health/ready', 3000)).status === 200,
        'ready again after SIGCONT',
        10_000,
      );
    });

    it('should answer /health/ready 503 (redis down, no address) and /health degraded within the health timeout', async () => {
      const ready = await probe(svc.url, '/health/ready', 4000);
      expect(ready.status).toBe(503);
      expect(ready.ms).toBeLessThan(3000);
      expect(JSON.parse(ready.text).error).toEqual({
        redis: { status: 'down' },
      });
      expect(ready.text).not.toContain(String(redis.port));
      const summary = await probe(svc.url, '/health', 4000, ADMIN);
      expect(summary.status).toBe(200);
      expect(summary.ms).toBeLessThan(3000);
      expect(JSON.parse(summary.text)).toMatchObject({
        status: 'degraded',
        redis: 'down',
        deliveryJobs: null,
      });
      expect((await probe(svc.url, '/health/live', 2000)).status).toBe(200);
    });

    it('should still serve /metrics within a few seconds (Prometheus scrapes time out at 10 s)', async () => {
      const metrics = await probe(svc.url, '/metrics', 4000, ADMIN);
      expect({ status: metrics.status, fast: metrics.ms < 4000 }).toEqual({
        status: 200,
        fast: true,
      });
      expect(metrics.text).toContain('process_cpu_seconds_total');
    });

    it('should answer the queue dashboard API within a few seconds, with an error rather than a hang', async () => {
      const board = await probe(
        svc.url,
        '/admin/queues/api/queues',
        4000,
        ADMIN,
      );
      expect(board.status).not.toBe('timeout');
      expect(board.ms).toBeLessThan(4000);
    });
  });

  describe('killed (connection refused)', () => {
    beforeAll(async () => redis.kill('SIGKILL'));
    afterAll(async () => {
      await redis.restart();
      await eventually(
        async () =>
          (await probe(svc.url, '/health/ready', 3000)).status === 200,
        'ready again once Redis is back',
        15_000,
      );
    });

    it('should answer /health/ready 503 quickly and keep /health/live 200', async () => {
      const ready = await probe(svc.url, '/health/ready', 4000);
      expect(ready.status).toBe(503);
      expect(ready.ms).toBeLessThan(3000);
      expect((await probe(svc.url, '/health/live', 2000)).status).toBe(200);
    });

    it('should still serve /metrics within a few seconds', async () => {
      const metrics = await probe(svc.url, '/metrics', 4000, ADMIN);
      expect({ status: metrics.status, fast: metrics.ms < 4000 }).toEqual({
        status: 200,
        fast: true,
      });
    });
  });
});
