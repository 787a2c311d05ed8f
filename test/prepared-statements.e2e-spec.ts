import { TransactionalOutbox } from 'nestjs-transactional-jobs';
import { DataSource, EntityManager, QueryFailedError } from 'typeorm';
import {
  GenericPlanPool,
  preparedQuery,
  preparedStatement,
  unpreparedRunner,
  usePreparedStatements,
} from '../src/database/prepared-query';
import { startE2eApp } from './support/harness';
import { useScratchDatabase } from './support/scratch-database';

const planMode = preparedStatement(
  'probe_plan_mode',
  "SELECT current_setting('plan_cache_mode') AS mode",
);
const failing = preparedStatement('probe_fails', 'SELECT 1 / $1::int AS n');
const sameLabelOtherText = preparedStatement(
  'probe_plan_mode',
  "SELECT current_setting('application_name') AS mode",
);

/** Runs `run` in a transaction, then lists the statements prepared on its connection. */
async function sessionStatements(
  db: DataSource,
  run: (tx: EntityManager) => Promise<unknown>,
) {
  return db.transaction(async (tx) => {
    await run(tx);
    const rows: { name: string }[] = await tx.query(
      'SELECT name FROM pg_prepared_statements ORDER BY name',
    );
    return rows.map((r) => r.name);
  });
}

describe('prepared statements (the worker hot path and the API statements)', () => {
  const scratch = useScratchDatabase('prepared', 3);
  const pools: GenericPlanPool[] = [];
  const url = () => (scratch().options as { url: string }).url;
  afterEach(() => usePreparedStatements(true));
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.close()));
  });

  it('should run the pool of hot statements with generic plans, and nothing else', async () => {
    const pool = new GenericPlanPool(url(), 1);
    pools.push(pool);
    await expect(pool.run(planMode, [])).resolves.toEqual([
      { mode: 'force_generic_plan' },
    ]);
    await expect(
      unpreparedRunner(scratch().manager).run(planMode, []),
    ).resolves.toEqual([{ mode: 'auto' }]);
    const [{ name }] = await pool.run<{ name: string }>(
      preparedStatement(
        'probe_app_name',
        "SELECT current_setting('application_name') AS name",
      ),
      [],
    );
    expect(name).toBe('webhooks-hot-statements');
  });

  it('should name a statement by its label and text, so that two texts never share a name', () => {
    expect(planMode.name).toMatch(/^probe_plan_mode_[0-9a-f]{10}$/);
    expect(sameLabelOtherText.name).not.toBe(planMode.name);
    expect(
      preparedStatement(planMode.name.slice(0, 15), planMode.text).name,
    ).toBe(planMode.name);
  });

  it('should prepare on the transaction connection when preparation is on, with custom plans', async () => {
    const names = await sessionStatements(scratch(), async (tx) => {
      await expect(preparedQuery(tx, planMode, [])).resolves.toEqual([
        { mode: 'auto' },
      ]);
    });
    expect(names).toContain(planMode.name);
  });

  it('should send the statement unnamed when preparation is off', async () => {
    // A text no earlier test prepared: the pool's connections keep theirs.
    const unnamed = preparedStatement('probe_unnamed', 'SELECT 2 AS two');
    usePreparedStatements(false);
    const names = await sessionStatements(scratch(), async (tx) => {
      await expect(preparedQuery(tx, unnamed, [])).resolves.toEqual([
        { two: 2 },
      ]);
    });
    expect(names).not.toContain(unnamed.name);
    usePreparedStatements(true);
    const named = await sessionStatements(scratch(), async (tx) => {
      await preparedQuery(tx, unnamed, []);
    });
    expect(named).toContain(unnamed.name);
  });

  it('should run outside a transaction on a connection of its own and give it back', async () => {
    const db = scratch();
    for (let i = 0; i < 10; i++) {
      await expect(preparedQuery(db.manager, planMode, [])).resolves.toEqual([
        { mode: 'auto' },
      ]);
    }
    // A leaked connection per call would have exhausted the pool of 3 long before.
    await expect(db.query('SELECT 1 AS one')).resolves.toEqual([{ one: 1 }]);
  });

  it('should fail with a QueryFailedError carrying the statement and the parameters, on every path', async () => {
    const pool = new GenericPlanPool(url(), 1);
    pools.push(pool);
    const paths: [string, () => Promise<unknown>][] = [
      ['generic-plan pool', () => pool.run(failing, [0])],
      ['prepared query', () => preparedQuery(scratch().manager, failing, [0])],
      [
        'unprepared runner',
        () => unpreparedRunner(scratch().manager).run(failing, [0]),
      ],
    ];
    for (const [, attempt] of paths) {
      const error = await attempt().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(QueryFailedError);
      expect(error).toMatchObject({
        query: failing.text,
        parameters: [0],
        message: 'division by zero',
      });
    }
    // The failed statement left the pool's connection usable.
    await expect(pool.run(failing, [2])).resolves.toEqual([{ n: 0 }]);
  });

  it('should pass DATABASE_PREPARED_STATEMENTS to the outbox, whose INSERT with each COMMIT is prepared too', async () => {
    for (const preparedStatements of [false, true]) {
      const service = await startE2eApp({ role: 'api', preparedStatements });
      try {
        expect(
          service.app.get(TransactionalOutbox).options.preparedStatements,
        ).toBe(preparedStatements);
      } finally {
        await service.close();
      }
    }
  });
});
