/**
 * `npm run bench:outbox-insert`: what preparing the outbox INSERT saves (`outbox.preparedStatements`).
 * The statement is the library's own (`PostgresOutboxStore.insertStatement`, one row), run in
 * `BENCH_OUTBOX_TX` (5000) transactions of BEGIN, INSERT, COMMIT on one connection, prepared
 * (named) and unprepared alternately for `BENCH_OUTBOX_ROUNDS` (5) rounds. Per transaction: the
 * Postgres backend's CPU (from /proc, so Postgres must run on this machine) and this process's
 * CPU, medians over the rounds, and the same-round ratios prepared / unprepared.
 * Needs Postgres (`DATABASE_URL`); works in the database `transactional_bench<TEST_DB_SUFFIX>`,
 * in a table it drops at the end.
 */
import { readFileSync } from 'fs';
import { Client } from 'pg';
import { resolveOutboxOptions } from '../libs/transactional/src/outbox/outbox.options';
import { PostgresOutboxStore } from '../libs/transactional/src/outbox/postgres-outbox-store';

const TRANSACTIONS = Number(process.env.BENCH_OUTBOX_TX ?? 5000);
const ROUNDS = Number(process.env.BENCH_OUTBOX_ROUNDS ?? 5);
const TABLE = 'bench_outbox_insert';
const BASE_URL =
  process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432';
const DATABASE = `transactional_bench${process.env.TEST_DB_SUFFIX ?? ''}`;

/** CPU time (µs) a process has used, from /proc/<pid>/stat. */
function processCpuUs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
    .split(') ')[1]
    .split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1e6) / 100;
}

function databaseUrl(database: string): string {
  const url = new URL(BASE_URL);
  url.pathname = `/${database}`;
  return url.toString();
}

async function ensureDatabase() {
  const admin = new Client({ connectionString: databaseUrl('postgres') });
  await admin.connect();
  const { rowCount } = await admin.query(
    'SELECT 1 FROM pg_database WHERE datname = $1',
    [DATABASE],
  );
  if (!rowCount) await admin.query(`CREATE DATABASE "${DATABASE}"`);
  await admin.end();
}

async function round(prepared: boolean) {
  const store = new PostgresOutboxStore(
    resolveOutboxOptions({ tableName: TABLE, preparedStatements: prepared }),
  );
  const client = new Client({ connectionString: databaseUrl(DATABASE) });
  await client.connect();
  const {
    rows: [{ pid }],
  } = await client.query('SELECT pg_backend_pid() AS pid');
  const data = JSON.stringify({
    deliveryId: '0193a0b2-6d4e-7c1a-9b7e-123456789abc',
  });
  const opts = JSON.stringify({
    jobId: 'x',
    attempts: 12,
    removeOnComplete: true,
  });
  const run = async (n: number, offset: number) => {
    for (let i = 0; i < n; i++) {
      const statement = store.insertStatement([
        [
          'deliveries',
          `${prepared}-${offset + i}-${process.hrtime.bigint()}`,
          'deliver',
          data,
          opts,
        ],
      ]);
      await client.query('BEGIN');
      await client.query({
        name: statement.name,
        text: statement.text,
        values: statement.values as unknown[],
      });
      await client.query('COMMIT');
    }
  };
  await run(200, 0); // warm-up: the Parse of the named statement, JIT
  const pg0 = processCpuUs(pid);
  const node0 = process.cpuUsage();
  await run(TRANSACTIONS, 200);
  const pg = (processCpuUs(pid) - pg0) / TRANSACTIONS;
  const nodeUsage = process.cpuUsage(node0);
  const node = (nodeUsage.user + nodeUsage.system) / TRANSACTIONS;
  await client.end();
  return { pg, node };
}

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function main() {
  await ensureDatabase();
  const setup = new Client({ connectionString: databaseUrl(DATABASE) });
  await setup.connect();
  await setup.query(`DROP TABLE IF EXISTS ${TABLE}`);
  // NOTE: the shape createOutboxMigration() gives the table, indexes included.
  await setup.query(`CREATE TABLE ${TABLE} (
    "id" text NOT NULL, "queue" text NOT NULL, "job_name" text NOT NULL,
    "data" jsonb NOT NULL, "opts" jsonb NOT NULL,
    "created_at" timestamptz NOT NULL DEFAULT clock_timestamp(),
    "available_at" timestamptz NOT NULL DEFAULT clock_timestamp(),
    "dispatched_at" timestamptz, "relay_attempts" integer NOT NULL DEFAULT 0,
    "last_error" text, PRIMARY KEY ("queue", "id"))`);
  await setup.query(
    `CREATE INDEX ${TABLE}_pending ON ${TABLE} ("available_at") WHERE "dispatched_at" IS NULL`,
  );
  await setup.query(
    `CREATE INDEX ${TABLE}_dispatched ON ${TABLE} ("dispatched_at") WHERE "dispatched_at" IS NOT NULL`,
  );
  const results: {
    unprepared: { pg: number; node: number };
    prepared: { pg: number; node: number };
  }[] = [];
  try {
    for (let r = 0; r < ROUNDS; r++) {
      // NOTE: the order alternates, so drift over the run hits both alike.
      const first = r % 2 === 0;
      const a = await round(!first);
      const b = await round(first);
      const [unprepared, prepared] = first ? [a, b] : [b, a];
      results.push({ unprepared, prepared });
      console.log(
        `round ${r + 1}: Postgres ${unprepared.pg.toFixed(1)} -> ${prepared.pg.toFixed(1)} us/tx, ` +
          `Node ${unprepared.node.toFixed(1)} -> ${prepared.node.toFixed(1)} us/tx`,
      );
    }
  } finally {
    await setup.query(`DROP TABLE IF EXISTS ${TABLE}`);
    await setup.end();
  }
  const pick = (f: (x: (typeof results)[number]) => number) =>
    median(results.map(f));
  console.log(
    `\n${TRANSACTIONS} transactions (BEGIN, one outbox row, COMMIT) per round, ${ROUNDS} rounds, medians:\n` +
      `Postgres CPU per transaction: unprepared ${pick((x) => x.unprepared.pg).toFixed(1)} us, ` +
      `prepared ${pick((x) => x.prepared.pg).toFixed(1)} us, ratio ${pick((x) => x.prepared.pg / x.unprepared.pg).toFixed(3)}\n` +
      `Node CPU per transaction:     unprepared ${pick((x) => x.unprepared.node).toFixed(1)} us, ` +
      `prepared ${pick((x) => x.prepared.node).toFixed(1)} us, ratio ${pick((x) => x.prepared.node / x.unprepared.node).toFixed(3)}`,
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
