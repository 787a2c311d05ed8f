import { Client } from 'pg';
import { DataSource } from 'typeorm';
import { dataSourceOptions } from '../src/database/data-source-options';
import { runMigrationsLocked } from '../src/database/migrator';
import { CLAIM_SQL } from '../src/deliveries/delivery-claims';
import {
  RECONCILE_AFTER_SQL,
  RECONCILE_SQL,
} from '../src/deliveries/delivery-reconciler';
import { RETENTION_SQL } from '../src/retention/retention.service';
import { e2eDatabaseUrl } from './support/harness';
import { HotIds, hotQueries, wrongPlans } from './support/hot-queries';

/** Sizes of the generated data set: one big tenant (account 1) and many small ones. */
const ACCOUNTS = 10_000;
const ENDPOINTS_PER_ACCOUNT = 5;
const EVENTS = 200_000;
const DELIVERIES = 1_000_000;
const TRIPS = 20_000;
const KEYS = 100_000;

/** Tables whose scans must use an index. */
const BIG_TABLES = [
  'accounts',
  'endpoints',
  'events',
  'deliveries',
  'delivery_attempts',
  'idempotency_keys',
];

const ACCOUNT_OF_EVENT = `CASE WHEN k % 2 = 0 THEN 1 ELSE ((k - 1) / 2 % ${ACCOUNTS}) + 1 END`;

/** The data set, in generate_series statements (FK triggers off: the ids are consistent). */
const GENERATE = [
  `INSERT INTO accounts (id, name, api_key_hash, api_key_prefix, created_at)
   SELECT md5('a' || a)::uuid, 'account ' || a, md5('key' || a) || md5('hash' || a), 'whk_abcd',
          now() - interval '90 days'
     FROM generate_series(1, ${ACCOUNTS}) a`,
  `INSERT INTO endpoints (id, account_id, url, secrets, event_types, created_at, updated_at)
   SELECT md5('e' || j)::uuid, md5('a' || ((j - 1) / ${ENDPOINTS_PER_ACCOUNT} + 1))::uuid,
          'https://hooks.example.com/' || j, '[]'::jsonb,
          CASE WHEN j % 3 = 0 THEN ARRAY['type.1'] END,
          now() - interval '80 days' + make_interval(secs => j), now()
     FROM generate_series(1, ${ACCOUNTS * ENDPOINTS_PER_ACCOUNT}) j`,
  `INSERT INTO trips (id, account_id, reference, origin, destination, planned_arrival,
                     expected_arrival, created_at, updated_at)
   SELECT md5('t' || t)::uuid, md5('a' || (CASE WHEN t % 2 = 0 THEN 1 ELSE t % ${ACCOUNTS} + 1 END))::uuid,
          'T-' || t, 'Lyon', 'Turin', now(), now(), now() - interval '70 days', now()
     FROM generate_series(1, ${TRIPS}) t`,
  `INSERT INTO events (id, account_id, type, payload, trip_id, created_at)
   SELECT md5('v' || k)::uuid, md5('a' || (${ACCOUNT_OF_EVENT}))::uuid, 'type.' || (k % 10),
          '{"n": 1}'::json,
          CASE WHEN k % 2 = 0 AND k % 10 = 0 THEN md5('t' || (2 * (k / 10 % ${TRIPS / 2}) + 2))::uuid END,
          now() - make_interval(secs => (${EVENTS} - k) * 25)
     FROM generate_series(1, ${EVENTS}) k`,
  `INSERT INTO deliveries (id, account_id, event_id, endpoint_id, status, attempt_count,
                          next_attempt_at, locked_until, created_at, updated_at, completed_at)
   SELECT md5('d' || m)::uuid, md5('a' || a)::uuid, md5('v' || k)::uuid,
          md5('e' || ((a - 1) * ${ENDPOINTS_PER_ACCOUNT} + slot + 1))::uuid,
          CASE WHEN m % 1000 = 0 THEN 'pending' WHEN m % 1000 = 1 THEN 'sending'
               WHEN m % 1000 < 22 THEN 'failed' ELSE 'succeeded' END,
          1,
          CASE WHEN m % 1000 = 0 THEN now() + make_interval(secs => m % 7200 - 3600) END,
          CASE WHEN m % 1000 = 1 THEN now() + make_interval(secs => m % 60 - 30) END,
          now() - make_interval(secs => (${EVENTS} - k) * 25) + make_interval(secs => slot / 1000.0),
          now(), now()
     FROM (SELECT m, k, slot, ${ACCOUNT_OF_EVENT} AS a
             FROM (SELECT m, (m - 1) % ${EVENTS} + 1 AS k, (m - 1) / ${EVENTS} AS slot
                     FROM generate_series(1, ${DELIVERIES}) m) s) t`,
  `INSERT INTO delivery_attempts (id, delivery_id, number, trigger, status, status_code,
                                 started_at, finished_at)
   SELECT md5('at' || m)::uuid, md5('d' || m)::uuid, 1, 'scheduled',
          CASE WHEN m % 1000 = 1 THEN 'in_progress' ELSE 'succeeded' END, 200,
          now() - make_interval(secs => (${DELIVERIES} - m) * 5), now()
     FROM generate_series(1, ${DELIVERIES}) m`,
  `INSERT INTO idempotency_keys (account_id, key, request_hash, response_status, created_at)
   SELECT md5('a' || (i % ${ACCOUNTS} + 1))::uuid::text, 'key-' || i, 'h', 201,
          now() - make_interval(secs => i * 2)
     FROM generate_series(1, ${KEYS}) i`,
];

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

function nodesOf(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodesOf)];
}

const INDEX_SCANS = ['Index Scan', 'Index Only Scan', 'Bitmap Index Scan'];

describe('when the tables hold a million deliveries', () => {
  const url = new URL(e2eDatabaseUrl());
  const database = `${url.pathname.slice(1)}_indexes`;
  url.pathname = `/${database}`;
  const admin = new Client({
    connectionString: new URL('/postgres', url).toString(),
  });
  let dataSource: DataSource;

  const bigAccount = "md5('a1')::uuid";
  const smallAccount = "md5('a3')::uuid";
  const values = async (sql: string) =>
    (await dataSource.query(`SELECT ${sql} AS v`))[0].v;
  let ids: Record<string, string> = {};

  beforeAll(async () => {
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    await admin.query(`CREATE DATABASE "${database}"`);
    dataSource = new DataSource(dataSourceOptions(url.toString(), 2));
    await dataSource.initialize();
    await runMigrationsLocked(dataSource);
    // The migrations' indexes are dropped, the data loaded, and the same indexes built again:
    // bulk loading is much faster without them, and what is measured is what they created.
    const indexes: { name: string; def: string }[] = await dataSource.query(
      `SELECT i.indexname AS name, i.indexdef AS def FROM pg_indexes i
        WHERE i.schemaname = 'public' AND i.tablename = ANY($1)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)`,
      [BIG_TABLES],
    );
    expect(indexes.length).toBeGreaterThan(10);
    const runner = dataSource.createQueryRunner();
    await runner.connect();
    try {
      await runner.query(`SET session_replication_role = replica`);
      await runner.query(`SET synchronous_commit = off`);
      await runner.query(`SET maintenance_work_mem = '128MB'`);
      for (const { name } of indexes)
        await runner.query(`DROP INDEX "${name}"`);
      for (const sql of GENERATE) await runner.query(sql);
      for (const { def } of indexes) await runner.query(def);
      await runner.query('ANALYZE');
    } finally {
      await runner.release();
    }
    ids = {
      pendingDelivery: await values("md5('d1000')::uuid"),
      endpoint: await values("md5('e1')::uuid"),
      event: await values(`md5('v${EVENTS}')::uuid`),
      trip: await values("md5('t2')::uuid"),
      attempt: await values("md5('at5')::uuid"),
    };
  }, 180_000);

  afterAll(async () => {
    await dataSource?.destroy();
    await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    await admin.end();
  });

  it('should hold the generated rows', async () => {
    const [row] = await dataSource.query(
      `SELECT (SELECT count(*)::int FROM deliveries) AS deliveries,
              (SELECT count(*)::int FROM deliveries WHERE account_id = ${bigAccount}) AS big`,
    );
    expect(row.deliveries).toBe(DELIVERIES);
    expect(row.big).toBeGreaterThanOrEqual(DELIVERIES / 2);
  });

  /** The hot queries, with the parameters of a real call. */
  const HOT: [string, () => [string, unknown[]]][] = [
    [
      'auth: the account of an API key',
      () => [
        'SELECT id, name FROM accounts WHERE api_key_hash = $1',
        [`${'0'.repeat(64)}`],
      ],
    ],
    [
      'claim: lock the delivery, count its scheduled attempts',
      () => [CLAIM_SQL, [ids.pendingDelivery]],
    ],
    [
      'claim: interrupt the abandoned attempt',
      () => [
        `UPDATE delivery_attempts SET status = 'interrupted' WHERE delivery_id = $1 AND status = 'in_progress'`,
        [ids.pendingDelivery],
      ],
    ],
    [
      'record: the attempt',
      () => [
        `UPDATE delivery_attempts SET status = 'succeeded', finished_at = now() WHERE id = $1`,
        [ids.attempt],
      ],
    ],
    [
      'record: the delivery',
      () => [
        `UPDATE deliveries SET status = 'succeeded', locked_until = NULL WHERE id = $1`,
        [ids.pendingDelivery],
      ],
    ],
    [
      'record: the endpoint',
      () => [
        `UPDATE endpoints SET failing_since = NULL WHERE id = $1`,
        [ids.endpoint],
      ],
    ],
    [
      'reconciler: lost pending and lease-expired sending deliveries',
      () => [RECONCILE_SQL, [1000, 1000]],
    ],
    [
      'reconciler: the next page of lost pending deliveries',
      () => [
        RECONCILE_AFTER_SQL,
        [1000, 1000, '2000-01-01 00:00:00.123456+00', ids.pendingDelivery],
      ],
    ],
    [
      'publish: the subscribed endpoints of an account',
      () => [
        `SELECT e.id FROM endpoints e WHERE e.account_id = ${bigAccount} AND NOT e.disabled
         AND (e.event_types IS NULL OR $1 = ANY (e.event_types))`,
        ['type.1'],
      ],
    ],
    [
      'recover: failed deliveries of an endpoint since a time',
      () => [
        `SELECT id FROM deliveries WHERE account_id = ${bigAccount} AND endpoint_id = $1
         AND status = 'failed' AND created_at >= now() - interval '14 days'
       ORDER BY created_at LIMIT 10000`,
        [ids.endpoint],
      ],
    ],
    ...(['bigAccount', 'smallAccount'] as const).flatMap(
      (who): [string, () => [string, unknown[]]][] => {
        const account = who === 'bigAccount' ? bigAccount : smallAccount;
        const after = `(now() - interval '10 days', '00000000-0000-0000-0000-000000000000'::uuid)`;
        return [
          [
            `list endpoints (${who})`,
            () => [
              `SELECT * FROM endpoints WHERE account_id = ${account}
               AND (created_at, id) > (now() - interval '100 days', '00000000-0000-0000-0000-000000000000'::uuid)
             ORDER BY created_at, id LIMIT 51`,
              [],
            ],
          ],
          [
            `list events (${who})`,
            () => [
              `SELECT id FROM events WHERE account_id = ${account} AND (created_at, id) < ${after}
             ORDER BY created_at DESC, id DESC LIMIT 51`,
              [],
            ],
          ],
          [
            `list events of a type (${who})`,
            () => [
              `SELECT id FROM events WHERE account_id = ${account} AND type = 'type.3'
             ORDER BY created_at DESC, id DESC LIMIT 51`,
              [],
            ],
          ],
          [
            `list events of a trip (${who})`,
            () => [
              `SELECT id FROM events WHERE account_id = ${account} AND trip_id = $1
             ORDER BY created_at DESC, id DESC LIMIT 51`,
              [ids.trip],
            ],
          ],
          [
            `list events in a time window (${who})`,
            () => [
              `SELECT id FROM events WHERE account_id = ${account}
               AND created_at >= now() - interval '3 days' AND created_at < now() - interval '2 days'
             ORDER BY created_at DESC, id DESC LIMIT 51`,
              [],
            ],
          ],
          [
            `list deliveries (${who})`,
            () => [
              `SELECT id FROM deliveries WHERE account_id = ${account} AND (created_at, id) < ${after}
             ORDER BY created_at DESC, id DESC LIMIT 51`,
              [],
            ],
          ],
          [
            `list failed deliveries (${who})`,
            () => [
              `SELECT id FROM deliveries WHERE account_id = ${account} AND status = 'failed'
             ORDER BY created_at DESC, id DESC LIMIT 51`,
              [],
            ],
          ],
          [
            `list failed deliveries of an endpoint (${who})`,
            () => [
              `SELECT id FROM deliveries WHERE account_id = ${account} AND status = 'failed'
               AND endpoint_id = $1 ORDER BY created_at DESC, id DESC LIMIT 51`,
              [ids.endpoint],
            ],
          ],
        ];
      },
    ),
    [
      'list the deliveries of an event',
      () => [
        `SELECT id FROM deliveries WHERE account_id = ${bigAccount} AND event_id = $1
       ORDER BY created_at, id LIMIT 51`,
        [ids.event],
      ],
    ],
    [
      'list the attempts of a delivery',
      () => [
        `SELECT * FROM delivery_attempts WHERE delivery_id = $1 AND number > 0
       ORDER BY number LIMIT 51`,
        [ids.pendingDelivery],
      ],
    ],
    ['retention: old events', () => [RETENTION_SQL.events, [30, 500]]],
    ['retention: old attempts', () => [RETENTION_SQL.attempts, [30, 500]]],
    [
      'retention: old idempotency keys',
      () => [RETENTION_SQL.idempotencyKeys, [24, 500]],
    ],
  ];

  /** The delivery path's hot queries on a batch of 20 due deliveries. */
  const deliveryPathPlans = async () => {
    const ms = Array.from({ length: 20 }, (_, i) => (i + 1) * 1000);
    const hotIds: HotIds = {
      deliveries: await Promise.all(
        ms.map((m) => values(`md5('d${m}')::uuid`)),
      ),
      attempts: await Promise.all(ms.map((m) => values(`md5('at${m}')::uuid`))),
      endpoints: await Promise.all(
        [1, 2, 3].map((j) => values(`md5('e${j}')::uuid`)),
      ),
      events: await Promise.all(ms.map((m) => values(`md5('v${m}')::uuid`))),
      account: await values(bigAccount),
      trip: await values(`md5('t2')::uuid`),
    };
    return wrongPlans(dataSource, hotQueries(hotIds));
  };

  it('should plan every hot query of the delivery path on its own index', async () => {
    expect(await deliveryPathPlans()).toEqual([]);
  });

  it('should keep those plans with statistics taken while nothing was pending', async () => {
    // Auto-analyze after a quiet period: no delivery due. Then a backlog arrives.
    const pending: { id: string }[] = await dataSource.query(
      `UPDATE deliveries SET status = 'succeeded' WHERE status = 'pending' RETURNING id`,
    );
    try {
      await dataSource.query('VACUUM ANALYZE deliveries');
      await dataSource.query(
        `UPDATE deliveries SET status = 'pending' WHERE id = ANY($1::uuid[])`,
        [pending.map((p) => p.id)],
      );
      expect(await deliveryPathPlans()).toEqual([]);
    } finally {
      await dataSource.query(
        `UPDATE deliveries SET status = 'pending' WHERE id = ANY($1::uuid[])`,
        [pending.map((p) => p.id)],
      );
      await dataSource.query('ANALYZE deliveries');
    }
  }, 120_000);

  it.each(HOT)('should use an index for %s', async (_name, query) => {
    const [sql, params] = query();
    const [
      {
        'QUERY PLAN': [plan],
      },
    ] = await dataSource.query(`EXPLAIN (FORMAT JSON) ${sql}`, params);
    const nodes = nodesOf(plan.Plan as PlanNode);
    const seqScans = nodes
      .filter((n) => n['Node Type'] === 'Seq Scan')
      .map((n) => n['Relation Name']);
    expect({ seqScans, plan: seqScans.length ? plan : 'fine' }).toEqual({
      seqScans: [],
      plan: 'fine',
    });
    expect(nodes.some((n) => INDEX_SCANS.includes(n['Node Type']))).toBe(true);
  });
});
