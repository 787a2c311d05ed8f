import { Client } from 'pg';
import request from 'supertest';
import { createTenant, Tenant } from './support/api';
import {
  ADMIN_TOKEN,
  E2eApp,
  e2eDatabaseUrl,
  eventually,
  startE2eApp,
} from './support/harness';
import { failOnProcessCrashes } from './support/process-crashes';

/**
 * The operational routes while Postgres misbehaves for the app: its backends terminated
 * (pg_terminate_backend, on this spec's own test database, never another one), and a table a
 * metric reads held under an exclusive lock (what a migration or VACUUM FULL does).
 */

const ADMIN = { authorization: `Bearer ${ADMIN_TOKEN}` };

async function probe(
  url: string,
  path: string,
  ms: number,
  headers: Record<string, string> = {},
) {
  const started = Date.now();
  try {
    const res = await request(url).get(path).set(headers).timeout(ms);
    return {
      status: res.status as number | string,
      ms: Date.now() - started,
      text: res.text,
    };
  } catch (error) {
    const status = (error as { timeout?: number }).timeout
      ? 'timeout'
      : String(error);
    return { status, ms: Date.now() - started, text: '' };
  }
}

describe("when the app's Postgres connections are terminated or a table it reads is locked", () => {
  failOnProcessCrashes();
  let svc: E2eApp;
  let admin: Client;
  let tenant: Tenant;

  /** Terminates every backend of this spec's test database but `admin`'s own. */
  const terminateAppBackends = async () =>
    (
      await admin.query<{ n: number }>(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
      )
    ).rows[0].n;

  beforeAll(async () => {
    admin = new Client({ connectionString: e2eDatabaseUrl() });
    await admin.connect();
    expect(
      (await admin.query('SELECT current_database() AS db')).rows[0].db,
    ).toMatch(/^webhooks_test/);
    svc = await startE2eApp({ role: 'api', healthCheckTimeoutMs: 1000 });
    tenant = await createTenant(svc, 'pg-ops');
    // Fill the pool a little, so that there are idle connections to kill.
    await Promise.all(
      Array.from({ length: 6 }, () => request(svc.url).get('/health/ready')),
    );
  });

  afterAll(async () => {
    await admin?.query('ROLLBACK').catch(() => undefined);
    await svc?.close();
    await admin?.end();
  });

  it('should keep /health/live, /metrics and the dashboard answering and be ready again within seconds', async () => {
    expect(await terminateAppBackends()).toBeGreaterThan(0);
    const seen: string[] = [];
    for (let i = 0; i < 3; i++) {
      for (const [path, headers] of [
        ['/health/live', {}],
        ['/metrics', ADMIN],
        ['/admin/queues/api/queues', ADMIN],
        ['/health', {}],
        ['/health/ready', {}],
      ] as [string, Record<string, string>][]) {
        const res = await probe(svc.url, path, 4000, headers);
        // /health and /health/ready may say 503 while a dead connection is found out; nothing
        // may answer 500 or hang.
        const allowed =
          path.startsWith('/health') && path !== '/health/live'
            ? [200, 503]
            : [200];
        if (!allowed.includes(res.status as number))
          seen.push(`${i} ${path} -> ${res.status} ${res.text.slice(0, 100)}`);
      }
    }
    expect(seen).toEqual([]);
    await eventually(
      async () => (await probe(svc.url, '/health/ready', 2000)).status === 200,
      'ready again',
      3000,
    );
    await request(svc.url).get('/v1/endpoints').set(tenant.auth).expect(200);
  });

  it('should answer a scrape whose Postgres backend is terminated mid-query with 200, not 500 or a hang', async () => {
    await admin.query('BEGIN');
    await admin.query('LOCK TABLE endpoints IN ACCESS EXCLUSIVE MODE');
    const scrape = probe(svc.url, '/metrics', 8000, ADMIN);
    try {
      await eventually(
        async () =>
          (
            await admin.query(
              // NOTE: blocked while its statement is parsed, so `query` still shows the one before.
              `SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
                AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
            )
          ).rowCount,
        'the scrape to wait for the lock',
        3000,
      );
      await terminateAppBackends();
    } finally {
      await admin.query('ROLLBACK');
    }
    const res = await scrape;
    expect(res.status).toBe(200);
    expect(res.text).toContain('webhook_queue_jobs');
    await eventually(
      async () => (await probe(svc.url, '/health/ready', 2000)).status === 200,
      'ready again',
      3000,
    );
  });

  it('should still serve /metrics within a few seconds while a table a gauge reads is locked (readiness does)', async () => {
    await admin.query('BEGIN');
    await admin.query('LOCK TABLE endpoints IN ACCESS EXCLUSIVE MODE');
    let metrics;
    let ready;
    try {
      ready = await probe(svc.url, '/health/ready', 4000);
      metrics = await probe(svc.url, '/metrics', 4000, ADMIN);
    } finally {
      await admin.query('ROLLBACK');
    }
    expect(ready.ms).toBeLessThan(3000);
    expect({ status: metrics.status, fast: metrics.ms < 4000 }).toEqual({
      status: 200,
      fast: true,
    });
  });
  it('should not pile up connections waiting on the lock when scraped again and again during it', async () => {
    await admin.query('BEGIN');
    await admin.query('LOCK TABLE endpoints IN ACCESS EXCLUSIVE MODE');
    let waiting: number;
    let statuses: (number | string)[];
    try {
      statuses = [];
      for (let i = 0; i < 4; i++) {
        statuses.push((await probe(svc.url, '/metrics', 4000, ADMIN)).status);
      }
      // NOTE: the gauge's query that still waits for the lock (one, not one per scrape).
      waiting = (
        await admin.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND wait_event_type = 'Lock' AND query LIKE '%FROM endpoints WHERE disabled%'`,
        )
      ).rows[0].n;
    } finally {
      await admin.query('ROLLBACK');
    }
    expect({ statuses, waiting }).toEqual({
      statuses: [200, 200, 200, 200],
      waiting: 1,
    });
  });
});
