import { createHash } from 'crypto';
import { Pool, PoolConfig } from 'pg';
import { EntityManager, QueryFailedError } from 'typeorm';

/**
 * A statement run often enough that parsing and planning it every time shows. Measured with
 * pg_stat_statements under load, the one-statement claim spent longer in the planner (0.4-0.7
 * ms) than executing (0.3-0.5 ms).
 */
export interface PreparedStatement {
  /** The statement's name on every connection: one per text (node-postgres checks it). */
  readonly name: string;
  readonly text: string;
}

/** A {@link PreparedStatement} named `label` and a hash of its text (no two texts share one). */
export function preparedStatement(
  label: string,
  text: string,
): PreparedStatement {
  const hash = createHash('sha1').update(text).digest('hex').slice(0, 10);
  return { name: `${label}_${hash}`, text };
}

/**
 * Whether statements are prepared (`DATABASE_PREPARED_STATEMENTS`, on by default). Off, each is
 * sent unnamed, as TypeORM does: for a pooler that does not keep prepared statements across
 * transactions (PgBouncer in transaction mode before 1.21).
 */
let preparing = true;

/** Turns preparation on or off for the whole process (the configuration, at start-up). */
export function usePreparedStatements(on: boolean): void {
  preparing = on;
}

/** A pg client or pool (TypeORM's Postgres query runner holds a client). */
interface PgQueryable {
  query(config: {
    name?: string;
    text: string;
    values: unknown[];
  }): Promise<{ rows: unknown[] }>;
}

/** Runs `statement` prepared on `client`; a failure is a `QueryFailedError`. */
async function runNamed<T>(
  client: PgQueryable,
  statement: PreparedStatement,
  params: unknown[],
): Promise<T[]> {
  try {
    const result = await client.query({
      name: statement.name,
      text: statement.text,
      values: params,
    });
    return result.rows as T[];
  } catch (error) {
    throw new QueryFailedError(statement.text, params, error as Error);
  }
}

/**
 * Runs `statement` on `manager`'s connection (its transaction's, if it has one; else one from
 * the pool, for this statement alone), prepared unless preparation is off: parsed once per
 * connection, planned as Postgres decides (a custom plan per run until a generic one is as
 * cheap). Resolves with the rows; a failure is a `QueryFailedError`, as from `manager.query`.
 */
export async function preparedQuery<T>(
  manager: EntityManager,
  statement: PreparedStatement,
  params: unknown[],
): Promise<T[]> {
  if (!preparing) return manager.query(statement.text, params);
  const runner = manager.queryRunner ?? manager.connection.createQueryRunner();
  const own = runner !== manager.queryRunner;
  try {
    return await runNamed<T>(
      (await runner.connect()) as PgQueryable,
      statement,
      params,
    );
  } finally {
    if (own) await runner.release();
  }
}

/** Runs statements that are transactions of their own (outside any other). */
export interface StatementRunner {
  /** Resolves with the rows; a failure is a `QueryFailedError`. */
  run<T>(statement: PreparedStatement, params: unknown[]): Promise<T[]>;
}

/** A {@link StatementRunner} on TypeORM's pool: each statement sent unnamed, planned per run. */
export function unpreparedRunner(manager: EntityManager): StatementRunner {
  return {
    run: (statement, params) => manager.query(statement.text, params),
  };
}

/**
 * A small pool of its own for the worker's hottest statements, each a transaction of its own
 * (the one-statement claim, the 2xx outcomes of a batch): prepared on each connection and run
 * with the generic plan (`plan_cache_mode=force_generic_plan` on these sessions only), so that
 * Postgres plans each once per connection instead of once per run. Left to itself it never
 * would: the generic plan estimates 10 elements per id array, more than the custom plans of a
 * batch of 2-3, and loses the cost comparison. Measured alone (3,000 claims of 2 deliveries in a
 * row): 0.9-1.0 ms per claim against 1.3-1.6 (prepared, custom plans) and 1.7 (unnamed). The
 * statements' generic plans are checked in test/query-plans.e2e-spec.ts, on stale statistics
 * too. TypeORM's pool keeps custom plans for everything else.
 */
export class GenericPlanPool implements StatementRunner {
  private readonly pool: Pool;

  constructor(
    databaseUrl: string,
    size: number,
    /** Reports an error of an idle connection (Postgres restarted, a backend terminated). */
    onIdleError: (error: Error) => void = () => undefined,
    extra: PoolConfig = {},
  ) {
    this.pool = new Pool({
      connectionString: databaseUrl,
      max: size,
      options: '-c plan_cache_mode=force_generic_plan',
      application_name: 'webhooks-hot-statements',
      ...extra,
    });
    this.pool.on('error', onIdleError);
  }

  run<T>(statement: PreparedStatement, params: unknown[]): Promise<T[]> {
    return runNamed<T>(this.pool, statement, params);
  }

  /** Closes the connections; statements in flight finish first. */
  async close(): Promise<void> {
    if (!this.pool.ended) await this.pool.end();
  }
}
