import type { DataSource } from 'typeorm';
import {
  BATCH_CLAIM_SQL,
  BATCH_EVENTS_SQL,
  BATCH_INTERRUPT_SQL,
  BATCH_LOCK_DELIVERIES_SQL,
  BATCH_LOCK_ENDPOINTS_SQL,
  ENDPOINT_TARGET_SQL,
} from '../../src/deliveries/delivery-batch-claims';
import {
  CLEAR_FAILING_SQL,
  RECORD_SUCCESSES_SQL,
} from '../../src/deliveries/delivery-batch-outcomes';
import { OLDEST_DUE_SQL } from '../../src/deliveries/delivery-backlog';
import { SCHEDULED_ATTEMPTS_SQL } from '../../src/deliveries/delivery-outcome.service';
import { CLAIM_SQL } from '../../src/deliveries/delivery-claims';
import { CLAIM_DUE_SQL } from '../../src/deliveries/delivery-due-claims';
import { PUBLISH_SQL } from '../../src/events/events.service';
import { REPORT_DELAY_SQL } from '../../src/trips/trips.service';
import {
  RECONCILE_AFTER_SQL,
  RECONCILE_RECHECK_SQL,
  RECONCILE_SQL,
} from '../../src/deliveries/delivery-reconciler';

/** Ids the hot queries are run with (rows that exist in the big data set, or not at all). */
export interface HotIds {
  deliveries: string[];
  attempts: string[];
  endpoints: string[];
  events: string[];
  account: string;
  trip: string;
}

/**
 * The delivery path's hot queries, as the worker, reconciler and API run them, each with the
 * indexes its plan must use and nothing else: whatever the statistics say (an empty table, a
 * million rows, statistics taken while nothing was pending), none may scan a table or pick
 * another index (`deliveries_pending_next` for a lookup by id scans every due row).
 */
export function hotQueries(ids: HotIds): {
  name: string;
  sql: string;
  params: unknown[];
  indexes: string[];
  /**
   * Run as a prepared statement (`preparedStatement`): its generic plan must hold too. The
   * worker's hot statements run with nothing but the generic plan; in a transaction, Postgres
   * may pick it after five runs.
   */
  prepared?: true;
}[] {
  const n = ids.deliveries.length;
  return [
    {
      name: 'claim batch: the pending due deliveries, in one statement',
      sql: CLAIM_DUE_SQL,
      params: [
        ids.deliveries,
        ids.deliveries.map((_, i) => ids.endpoints[i % ids.endpoints.length]),
        25_000,
        5,
      ],
      indexes: [
        'endpoints_pkey',
        'deliveries_pkey',
        'events_pkey',
        'delivery_attempts_delivery',
      ],
      prepared: true,
    },
    {
      name: 'claim batch: lock the endpoints',
      sql: BATCH_LOCK_ENDPOINTS_SQL,
      params: [ids.endpoints],
      indexes: ['endpoints_pkey'],
    },
    {
      name: 'claim batch: lock the deliveries, count their scheduled attempts',
      sql: BATCH_LOCK_DELIVERIES_SQL,
      params: [ids.deliveries],
      indexes: ['deliveries_pkey', 'delivery_attempts_delivery'],
    },
    {
      name: 'claim batch: interrupt abandoned attempts',
      sql: BATCH_INTERRUPT_SQL,
      params: [ids.deliveries],
      indexes: ['delivery_attempts_delivery'],
    },
    {
      name: 'claim batch: take the leases, insert the attempts',
      sql: BATCH_CLAIM_SQL,
      params: [ids.deliveries, 25_000],
      indexes: ['deliveries_pkey'],
    },
    {
      name: 'claim batch: the events',
      sql: BATCH_EVENTS_SQL,
      params: [ids.events],
      indexes: ['events_pkey'],
    },
    {
      name: 'worker: the endpoint of a claim taken ahead, read again',
      sql: ENDPOINT_TARGET_SQL,
      params: [ids.endpoints[0]],
      indexes: ['endpoints_pkey'],
      prepared: true,
    },
    {
      name: 'outcome: the scheduled attempts of a delivery',
      sql: SCHEDULED_ATTEMPTS_SQL,
      params: [ids.deliveries[0]],
      indexes: ['delivery_attempts_delivery'],
    },
    {
      name: 'claim (alone): lock the delivery',
      sql: CLAIM_SQL,
      params: [ids.deliveries[0]],
      indexes: ['deliveries_pkey', 'delivery_attempts_delivery'],
    },
    {
      name: 'worker: the endpoint of a job without one',
      sql: 'SELECT endpoint_id, status FROM deliveries WHERE id = $1',
      params: [ids.deliveries[0]],
      indexes: ['deliveries_pkey'],
    },
    {
      name: 'outcome batch: record the successes, in one statement',
      sql: RECORD_SUCCESSES_SQL,
      params: [
        ids.attempts,
        ids.deliveries,
        Array(n).fill(200),
        Array(n).fill(3),
        Array(n).fill('ok'),
        Array(n).fill(false),
        ids.deliveries.map((_, i) => ids.endpoints[i % ids.endpoints.length]),
      ],
      indexes: ['delivery_attempts_pkey', 'deliveries_pkey', 'endpoints_pkey'],
      prepared: true,
    },
    {
      name: 'outcome: end the endpoints failure runs',
      sql: CLEAR_FAILING_SQL,
      params: [ids.endpoints],
      indexes: ['endpoints_pkey'],
    },
    {
      name: 'outcome (alone): finish the delivery',
      sql: `UPDATE deliveries SET status = $2, locked_until = NULL, updated_at = now() WHERE id = $1`,
      params: [ids.deliveries[0], 'succeeded'],
      indexes: ['deliveries_pkey'],
    },
    {
      name: 'reconciler: lost pending and lease-expired sending deliveries',
      sql: RECONCILE_SQL,
      params: [30_000, 1000],
      indexes: ['deliveries_pending_next', 'deliveries_sending_lease'],
    },
    {
      name: 'reconciler: the next page of lost pending deliveries',
      sql: RECONCILE_AFTER_SQL,
      params: [
        30_000,
        1000,
        '2000-01-01 00:00:00.123456+00',
        ids.deliveries[0],
      ],
      indexes: ['deliveries_pending_next'],
    },
    {
      name: 'reconciler: do the deliveries without a job still look lost',
      sql: RECONCILE_RECHECK_SQL,
      params: [ids.deliveries, 30_000],
      indexes: ['deliveries_pkey'],
    },
    {
      name: 'backlog: the oldest due pending delivery',
      sql: OLDEST_DUE_SQL,
      params: [],
      indexes: ['deliveries_pending_next'],
    },
    {
      name: 'publish: the event and a delivery per subscribed endpoint',
      sql: PUBLISH_SQL,
      params: [ids.account, 'trip.delayed', '{}', null, 0],
      indexes: ['endpoints_account_created_id'],
      prepared: true,
    },
    {
      name: 'delay a trip: the trip, its delay, the event and its deliveries, in one statement',
      sql: REPORT_DELAY_SQL,
      params: [ids.trip, ids.account, 5, 'traffic', 0],
      indexes: ['endpoints_account_created_id', 'trips_pkey'],
      prepared: true,
    },
    {
      name: 'list endpoints',
      sql: `SELECT * FROM endpoints WHERE account_id = $1
             AND (created_at, id) > (now() - interval '100 days', '00000000-0000-0000-0000-000000000000'::uuid)
           ORDER BY created_at, id LIMIT 51`,
      params: [ids.account],
      indexes: ['endpoints_account_created_id'],
    },
  ];
}

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Relation Name'?: string;
  Plans?: PlanNode[];
}

function nodesOf(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodesOf)];
}

/**
 * The plan of `sql` in short: the tables it scans without an index, and the indexes it uses.
 * Run in a transaction that is rolled back (EXPLAIN does not execute, but stays safe).
 */
export async function planOf(
  dataSource: DataSource,
  sql: string,
  params: unknown[],
): Promise<{ seqScans: string[]; indexes: string[] }> {
  const [
    {
      'QUERY PLAN': [plan],
    },
  ] = await dataSource.query(`EXPLAIN (FORMAT JSON) ${sql}`, params);
  return shortPlan(plan.Plan as PlanNode);
}

function shortPlan(root: PlanNode): { seqScans: string[]; indexes: string[] } {
  const nodes = nodesOf(root);
  return {
    seqScans: nodes
      .filter((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name'])
      .map((n) => n['Relation Name']!)
      .filter((name) => !name.startsWith('pg_')),
    indexes: [
      ...new Set(
        nodes.filter((n) => n['Index Name']).map((n) => n['Index Name']!),
      ),
    ].sort(),
  };
}

/** `value` as an SQL literal (for EXECUTE, which takes no bind parameters). */
function literal(
  client: { escapeLiteral(s: string): string },
  value: unknown,
): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'number' || typeof value === 'boolean')
    return String(value);
  if (Array.isArray(value))
    return client.escapeLiteral(
      `{${value.map((v) => (v === null ? 'NULL' : JSON.stringify(String(v)))).join(',')}}`,
    );
  return client.escapeLiteral(String(value));
}

/**
 * The generic plan of `sql` (what a prepared statement runs with once Postgres stops planning
 * it per run, or from the start with `plan_cache_mode=force_generic_plan`, as the worker's
 * {@link GenericPlanPool} does), in the short form of {@link planOf}.
 */
export async function genericPlanOf(
  dataSource: DataSource,
  sql: string,
  params: unknown[],
): Promise<{ seqScans: string[]; indexes: string[] }> {
  const runner = dataSource.createQueryRunner();
  try {
    const client = (await runner.connect()) as {
      escapeLiteral(s: string): string;
    };
    await runner.query('SET plan_cache_mode = force_generic_plan');
    await runner.query(`PREPARE hot_plan_probe AS ${sql}`);
    try {
      const [
        {
          'QUERY PLAN': [plan],
        },
      ] = await runner.query(
        `EXPLAIN (FORMAT JSON) EXECUTE hot_plan_probe(${params
          .map((p) => literal(client, p))
          .join(', ')})`,
      );
      return shortPlan(plan.Plan as PlanNode);
    } finally {
      await runner.query('DEALLOCATE hot_plan_probe');
      await runner.query('RESET plan_cache_mode');
    }
  } finally {
    await runner.release();
  }
}

/**
 * The queries whose plan is not exactly their indexes (no table scanned): the plan of each, and
 * of the prepared ones their generic plan too.
 */
export async function wrongPlans(
  dataSource: DataSource,
  queries: ReturnType<typeof hotQueries>,
): Promise<unknown[]> {
  const wrong: unknown[] = [];
  for (const query of queries) {
    const expected = { seqScans: [], indexes: [...query.indexes].sort() };
    const plans = [
      ['custom', await planOf(dataSource, query.sql, query.params)],
      ...(query.prepared
        ? [
            [
              'generic',
              await genericPlanOf(dataSource, query.sql, query.params),
            ],
          ]
        : []),
    ] as const;
    for (const [kind, plan] of plans)
      if (JSON.stringify(plan) !== JSON.stringify(expected))
        wrong.push({ query: query.name, kind, plan, expected });
  }
  return wrong;
}
