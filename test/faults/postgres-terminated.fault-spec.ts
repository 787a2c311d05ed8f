import { Client } from 'pg';
import { waitFor } from './support/cleanup';
import { expectNothingLost, finalCheck } from './support/checker';
import { FaultEnv } from './support/fault-env';
import {
  LoadResult,
  setUpTenant,
  startLoad,
  summarize,
  Tenant,
} from './support/load';
import type { ServiceProcess } from './support/service-process';

const WAIT_LIST = 'bull:webhook-deliveries:wait';

/** Everything a delay request writes, counted; equal before and after = nothing of it stayed. */
async function footprint(env: FaultEnv) {
  const [row] = await env.db.query(
    `SELECT (SELECT count(*) FROM events) AS events,
            (SELECT count(*) FROM deliveries) AS deliveries,
            (SELECT count(*) FROM trip_delays) AS delays,
            (SELECT count(*) FROM transactional_outbox) AS outbox,
            (SELECT sum(delay_minutes_total) FROM trips) AS minutes`,
  );
  const redis = env.redis.client();
  try {
    return { ...row, jobs: await redis.llen(WAIT_LIST) };
  } finally {
    redis.disconnect();
  }
}

/**
 * Holds `lockSql` in a transaction of its own, sends a delay request that blocks on that lock,
 * terminates the request's backend while it waits, and resolves with the response.
 */
async function terminateBlockedRequest(
  env: FaultEnv,
  api: ServiceProcess,
  tenant: Tenant,
  lockSql: string,
  lockParams: unknown[],
) {
  const locker = new Client({ connectionString: env.db.url });
  await locker.connect();
  try {
    await locker.query('BEGIN');
    await locker.query(lockSql, lockParams);
    const response = fetch(`${api.url}/v1/trips/${tenant.tripIds[0]}/delays`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${tenant.apiKey}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ minutes: 7, reason: 'terminated' }),
      signal: AbortSignal.timeout(30_000),
    });
    const blocked = await waitFor(
      async () => {
        const rows = await env.db.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity
            WHERE datname = $1 AND wait_event_type = 'Lock' AND pid <> $2`,
          [env.db.name, (locker as any).processID],
        );
        return rows.length === 1 ? rows[0].pid : undefined;
      },
      'the request to wait on the lock',
      15_000,
    );
    const [{ terminated }] = await env.db.query(
      `SELECT pg_terminate_backend($1) AS terminated`,
      [blocked],
    );
    expect(terminated).toBe(true);
    const res = await response;
    return { status: res.status, body: await res.json() };
  } finally {
    await locker.query('ROLLBACK').catch(() => undefined);
    await locker.end();
  }
}

describe('when the Postgres connection of a request is terminated mid-transaction', () => {
  let env: FaultEnv;

  beforeAll(async () => {
    env = await FaultEnv.create('5');
  });

  afterAll(async () => {
    await env?.close();
  });

  it('should fail the request cleanly, enqueue nothing of it, and keep serving', async () => {
    // API only: every job it enqueues stays in Redis's wait list, where the spec can see it.
    const api = await env.start('api', { PROCESS_ROLE: 'api' });
    const tenant = await setUpTenant(api.url, env.sink.url, 5);
    const results: LoadResult[] = [];
    const warmUp = await startLoad({
      tenant,
      baseUrl: () => api.url,
      total: 20,
      concurrency: 5,
    }).done;
    expect(summarize(warmUp)).toEqual({ 201: 20 });
    results.push(...warmUp);

    // (a) Blocked on the trip's row lock, before the request has written anything.
    // (b) Blocked on the endpoint's key-share lock (deliveries' foreign key), after the
    //     trip, the delay and the event were written in the transaction.
    const cases = [
      [`SELECT id FROM trips WHERE id = $1 FOR UPDATE`, [tenant.tripIds[0]]],
      [
        `SELECT id FROM endpoints WHERE id = $1 FOR UPDATE`,
        [tenant.endpointId],
      ],
    ] as const;
    for (const [lockSql, params] of cases) {
      const before = await footprint(env);
      const res = await terminateBlockedRequest(env, api, tenant, lockSql, [
        ...params,
      ]);
      results.push({
        index: -1,
        status: res.status,
        startedAt: 0,
        ms: 0,
        refused: 0,
      });
      expect(res).toEqual({
        status: 500,
        body: { statusCode: 500, message: 'Internal server error' },
      });
      expect(await footprint(env)).toEqual(before);
      expect(api.running).toBe(true);
    }

    // The pool dropped the dead connection: every later request succeeds.
    const after = await startLoad({
      tenant,
      baseUrl: () => api.url,
      total: 40,
      concurrency: 10,
    }).done;
    expect(summarize(after)).toEqual({ 201: 40 });
    results.push(...after);

    // What reached Redis is exactly the committed deliveries: one job each, nothing else.
    const redis = env.redis.client();
    try {
      await waitFor(
        async () => (await redis.llen(WAIT_LIST)) === 60,
        'the 60 committed jobs in the wait list',
        10_000,
      );
      const jobIds = await redis.lrange(WAIT_LIST, 0, -1);
      const deliveries = await env.db.query<{ id: string }>(
        `SELECT id FROM deliveries`,
      );
      expect(new Set(jobIds.map((id) => id.replace(/:1$/, '')))).toEqual(
        new Set(deliveries.map((d) => d.id)),
      );
    } finally {
      redis.disconnect();
    }

    await env.start('worker', { PROCESS_ROLE: 'worker' });
    const report = await finalCheck({
      test: '5 Postgres connection terminated',
      db: env.db,
      sink: env.sink,
      results,
      services: env.services,
      redis: env.redis,
    });
    expectNothingLost(report);
    expect(report.committedEvents).toBe(60);
    expect(report.answered2xx).toBe(60);
  });
});
