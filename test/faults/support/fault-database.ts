import { Client, Pool } from 'pg';

/** A database owned by one fault spec on the shared Postgres, dropped in `afterAll`. */
export interface FaultDatabase {
  readonly name: string;
  readonly url: string;
  /** A small pool on the database, for the checks. */
  readonly pool: Pool;
  query<R = any>(sql: string, params?: unknown[]): Promise<R[]>;
  /** Closes the pool and drops the database (connections of dead processes included). */
  drop(): Promise<void>;
}

function serverUrl(database: string): string {
  const url = new URL(
    process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  );
  url.pathname = `/${database}`;
  return url.toString();
}

async function admin<T>(fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: serverUrl('postgres') });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Creates `name` afresh (dropping a leftover of an earlier run); the app migrates it. */
export async function createFaultDatabase(
  name: string,
): Promise<FaultDatabase> {
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`bad database name ${name}`);
  await admin(async (client) => {
    await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await client.query(`CREATE DATABASE "${name}"`);
  });
  const url = serverUrl(name);
  const pool = new Pool({ connectionString: url, max: 4 });
  // NOTE: a pooled client can be hit by a terminated backend; the pool must not crash jest.
  pool.on('error', () => undefined);
  let dropped = false;
  return {
    name,
    url,
    pool,
    async query(sql, params) {
      return (await pool.query(sql, params as any[])).rows;
    },
    async drop() {
      if (dropped) return;
      dropped = true;
      await pool.end().catch(() => undefined);
      await admin((client) =>
        client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`),
      );
    },
  };
}
