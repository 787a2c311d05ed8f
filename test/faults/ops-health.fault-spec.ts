import { sleep, waitFor } from './support/cleanup';
import { FaultEnv } from './support/fault-env';
import { freePort } from './support/ports';
import { FAULT_ADMIN_TOKEN, ServiceProcess } from './support/service-process';

const ADMIN = { authorization: `Bearer ${FAULT_ADMIN_TOKEN}` };

async function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any; text: string }> {
  const res = await fetch(url, {
    headers,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body, text };
}

describe('when an orchestrator probes the API and a worker', () => {
  let env: FaultEnv;
  let api: ServiceProcess;
  let worker: ServiceProcess;
  let workerUrl: string;

  beforeAll(async () => {
    env = await FaultEnv.create('ops_health');
    api = await env.start('api', { PROCESS_ROLE: 'api', OUTBOX_RELAY: 'off' });
    const healthPort = await freePort();
    worker = await env.start('worker', {
      PROCESS_ROLE: 'worker',
      HEALTH_PORT: String(healthPort),
    });
    workerUrl = `http://127.0.0.1:${healthPort}`;
  });

  afterAll(async () => {
    await env?.close();
  });

  it('should answer live and ready on the API port and on the worker health port', async () => {
    for (const base of [api.url, workerUrl]) {
      expect(await get(`${base}/health/live`)).toMatchObject({
        status: 200,
        body: { status: 'ok' },
      });
      const ready = await get(`${base}/health/ready`);
      expect(ready.status).toBe(200);
      // Anonymous: each check's up/down, nothing more.
      expect(ready.body).toEqual({
        status: 'ok',
        info: {
          database: { status: 'up' },
          redis: { status: 'up' },
          outbox: { status: 'up' },
          deliveryBacklog: { status: 'up' },
        },
        error: {},
        details: {
          database: { status: 'up' },
          redis: { status: 'up' },
          outbox: { status: 'up' },
          deliveryBacklog: { status: 'up' },
        },
      });
      const detailed = await get(`${base}/health/ready`, ADMIN);
      expect(detailed.body.details.outbox).toEqual({
        status: 'up',
        pending: 0,
        oldestPendingAgeMs: null,
        maxAgeMs: 60_000,
      });
    }
  });

  it('should serve nothing but health checks on the worker port', async () => {
    const res = await get(`${workerUrl}/v1/endpoints`);
    expect(res.status).toBe(404);
    expect(res.body.message).toContain('a worker process serves only /health');
    expect((await get(`${workerUrl}/docs-json`)).status).toBe(404);
  });

  it('should answer ready 503 while its Redis is down, with the error only for the admin token, and 200 once it is back', async () => {
    await env.redis.kill('SIGKILL');
    try {
      for (const base of [api.url, workerUrl]) {
        const started = Date.now();
        const ready = await get(`${base}/health/ready`);
        // The Redis check gives up after HEALTH_CHECK_TIMEOUT_MS (1 s by default).
        expect(Date.now() - started).toBeLessThan(5_000);
        expect(ready.status).toBe(503);
        expect(ready.body.status).toBe('error');
        expect(ready.body.error).toEqual({ redis: { status: 'down' } });
        expect(ready.body.info.database).toEqual({ status: 'up' });
        expect(ready.text).not.toContain(String(env.redis.port));
        const detailed = await get(`${base}/health/ready`, ADMIN);
        expect(detailed.status).toBe(503);
        expect(detailed.body.error.redis.status).toBe('down');
        expect(detailed.body.error.redis.message).toEqual(expect.any(String));
        // Liveness does not depend on Redis: a restart would not help.
        expect((await get(`${base}/health/live`)).status).toBe(200);
        expect(await get(`${base}/health`)).toMatchObject({
          status: 200,
          body: { status: 'degraded', database: 'up', redis: 'down' },
        });
      }
    } finally {
      await env.redis.restart();
    }
    for (const base of [api.url, workerUrl]) {
      await waitFor(
        async () => (await get(`${base}/health/ready`)).status === 200,
        `${base} to be ready again`,
        30_000,
      );
    }
  });

  it('should answer ready 503 while the oldest outbox row is older than HEALTH_OUTBOX_MAX_AGE_MS', async () => {
    await worker.kill('SIGKILL');
    // A row no relay dispatches (this API runs none, its worker is gone): a stuck backlog.
    await env.db.query(
      `INSERT INTO transactional_outbox (id, queue, job_name, data, opts, created_at, available_at)
       VALUES ('stuck-1', 'nowhere', 'x', '{}', '{}', clock_timestamp() - interval '2 minutes', clock_timestamp() + interval '1 hour')`,
    );
    try {
      const ready = await get(`${api.url}/health/ready`);
      expect(ready.status).toBe(503);
      expect(ready.body.error).toEqual({ outbox: { status: 'down' } });
      const detailed = await get(`${api.url}/health/ready`, ADMIN);
      expect(detailed.body.error.outbox).toMatchObject({
        status: 'down',
        pending: 1,
        maxAgeMs: 60_000,
      });
      expect(detailed.body.error.outbox.oldestPendingAgeMs).toBeGreaterThan(
        119_000,
      );
    } finally {
      await env.db.query(
        `DELETE FROM transactional_outbox WHERE id = 'stuck-1'`,
      );
    }
    await sleep(100);
    expect((await get(`${api.url}/health/ready`)).status).toBe(200);
  });
});
