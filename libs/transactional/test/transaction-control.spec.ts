/**
 * Transaction control sent by hand inside a scope (COMMIT, ROLLBACK, SAVEPOINT... as SQL, or
 * TypeORM's startTransaction()/commitTransaction()/rollbackTransaction() on the
 * transaction's query runner) is refused with TransactionControlError before it is sent: the
 * transaction stays open, and its jobs follow its outcome. Before, such a statement ended the
 * transaction or opened a savepoint the library could not see: a job was enqueued for rows that
 * a hand-sent ROLLBACK (or `ROLLBACK TO SAVEPOINT typeorm_1`) undid, or dropped for rows that a
 * hand-sent COMMIT had committed. On Postgres and MariaDB (`LIB_DB`), Bull and BullMQ.
 *
 * The recognition of such statements in SQL text (comments, string literals, quoted
 * identifiers, dollar quotes, several statements in one text) is checked against a model with
 * fast-check: `TX_CONTROL_RUNS` cases per dialect (default 500).
 */
import fc from 'fast-check';
import { Propagation, TransactionControlError } from '../src';
import { transactionControlIn } from '../src/dialect/transaction-control';
import type { SqlDialect } from '../src/dialect/sql-dialect';
import { useAdversarialApp } from './support/adversarial-app';
import { onMariaDb, uniqueName } from './support/env';
import { inRedis, waitFor } from './support/lib-app';
import { Order } from './support/order.entity';

const RUNS = Number(process.env.TX_CONTROL_RUNS ?? 500);
const PLAIN = uniqueName('txctl-plain');
const DURABLE = uniqueName('txctl-durable');
const TABLE = 'tx_control_outbox';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const app = useAdversarialApp({
  plain: PLAIN,
  durable: DURABLE,
  outboxTable: TABLE,
});

const rows = (label: string) => app.ds.getRepository(Order).countBy({ label });

/** What a scope's promise settled with: 'committed', or the error's class name. */
const outcomeOf = (p: Promise<unknown>) =>
  p.then(
    () => 'committed',
    (error: Error) => error.constructor.name,
  );

/** Statements sent by hand in a scope that would end it or open a savepoint it cannot see. */
const HAND_SENT: string[] = [
  'COMMIT',
  'ROLLBACK',
  'commit work',
  'SAVEPOINT hand_made',
  'ROLLBACK TO SAVEPOINT hand_made',
  'RELEASE SAVEPOINT hand_made',
  'BEGIN',
  'START TRANSACTION',
  '  /* a comment */ COMMIT',
  '-- a comment\nROLLBACK',
  ...(onMariaDb
    ? ["XA START 'x'", '# a comment\nCOMMIT']
    : ['END', 'ABORT', "PREPARE TRANSACTION 'x'", 'SELECT 1; COMMIT']),
];

describe.each([
  ['plain', () => app.plain, () => app.plainBull],
  ['durable', () => app.durable, () => app.durableBull],
])('with a %s queue', (_kind, queue, bull) => {
  describe.each(HAND_SENT)('when %j is sent by hand in a scope', (sql) => {
    it('should refuse it and leave the transaction open: a scope that returns commits its rows and jobs', async () => {
      const label = uniqueName('hand-commit');
      let id = '';
      let refused: unknown;
      const outcome = await outcomeOf(
        app.host.withTransaction(async () => {
          await app.host.getRepository(Order).insert({ label });
          id = await queue().add({ label });
          refused = await app.host.manager.query(sql).catch((e: unknown) => e);
          await app.host.getRepository(Order).insert({ label });
        }),
      );
      expect(refused).toBeInstanceOf(TransactionControlError);
      expect(outcome).toBe('committed');
      expect(await rows(label)).toBe(2);
      await waitFor(() => inRedis(bull(), id), `job ${id}`, 5000);
    });

    it('should refuse it and leave the transaction open: a scope that throws rolls back its rows and drops its jobs', async () => {
      const label = uniqueName('hand-rollback');
      let id = '';
      const outcome = await outcomeOf(
        app.host.withTransaction(async () => {
          await app.host.getRepository(Order).insert({ label });
          id = await queue().add({ label });
          await app.host.manager.query(sql).catch(() => undefined);
          throw new Error('undo');
        }),
      );
      expect(outcome).toBe('Error');
      // NOTE: past the outbox's grace period: a durable row left behind would be relayed.
      await sleep(400);
      expect(await rows(label)).toBe(0);
      expect(await inRedis(bull(), id)).toBe(false);
    });
  });

  it("should refuse TypeORM's startTransaction() on the scope's query runner (a savepoint it cannot see): the scope that lets the error out rolls back", async () => {
    const label = uniqueName('qr-start');
    let id = '';
    const outcome = await outcomeOf(
      app.host.withTransaction(async () => {
        const qr = app.host.manager.queryRunner!;
        id = await queue().add({ label });
        await qr.startTransaction();
        await app.host.getRepository(Order).insert({ label });
        await qr.rollbackTransaction();
      }),
    );
    expect(outcome).toBe('TransactionControlError');
    await sleep(400);
    expect(await rows(label)).toBe(0);
    expect(await inRedis(bull(), id)).toBe(false);
  });

  it.each(['commitTransaction', 'rollbackTransaction'] as const)(
    "should refuse TypeORM's %s() on the scope's query runner and keep the transaction",
    async (method) => {
      const label = uniqueName(`qr-${method}`);
      let id = '';
      let refused: unknown;
      const outcome = await outcomeOf(
        app.host.withTransaction(async () => {
          await app.host.getRepository(Order).insert({ label });
          id = await queue().add({ label });
          const qr = app.host.manager.queryRunner!;
          refused = await qr[method]().catch((e: unknown) => e);
          await app.host.getRepository(Order).insert({ label });
        }),
      );
      expect(refused).toBeInstanceOf(TransactionControlError);
      expect(outcome).toBe('committed');
      expect(await rows(label)).toBe(2);
      await waitFor(() => inRedis(bull(), id), `job ${id}`, 5000);
    },
  );
});

it('should still run manager.transaction(fn) as a NESTED scope whose rollback drops its jobs', async () => {
  const label = uniqueName('nested-manager');
  let inner = '';
  let outer = '';
  await app.host.withTransaction(async () => {
    await app.host.getRepository(Order).insert({ label });
    outer = await app.plain.add({ label });
    await app.host.manager
      .transaction(async (m) => {
        await m.getRepository(Order).insert({ label });
        inner = await app.plain.add({ label });
        throw new Error('undo the inner part');
      })
      .catch(() => undefined);
  });
  expect(await rows(label)).toBe(1);
  await waitFor(() => inRedis(app.plainBull, outer), `job ${outer}`, 5000);
  expect(await inRedis(app.plainBull, inner)).toBe(false);
});

it('should run statements that only mention the words (strings, comments, identifiers, expressions)', async () => {
  const label = uniqueName('lookalikes');
  const statements = onMariaDb
    ? [
        "SELECT 'COMMIT; ROLLBACK' AS x",
        "SELECT 'it\\'s; commit' AS x",
        'SELECT "; commit" AS x',
        'SELECT 1 AS `commit; rollback`',
        'SELECT 1 -- ; commit',
        'SELECT 1 # ; commit',
        'SELECT /* ; rollback */ 1',
        'SELECT CASE WHEN 1 = 1 THEN 1 END AS x',
      ]
    : [
        "SELECT 'COMMIT; ROLLBACK' AS x",
        "SELECT E'it\\'s; commit' AS x",
        "SELECT 'it''s; commit' AS x",
        'SELECT 1 AS "commit; rollback"',
        'SELECT 1 -- ; commit',
        'SELECT /* nested /* ; commit */ ; rollback */ 1',
        'SELECT $$; COMMIT$$ AS x',
        'SELECT $tag$ $$; COMMIT $tag$ AS x',
        'SELECT CASE WHEN 1 = 1 THEN 1 END AS x',
        'DO $$ BEGIN PERFORM 1; END $$',
        'PREPARE tx_control_probe AS SELECT 1',
        'DEALLOCATE tx_control_probe',
        `CREATE FUNCTION tx_control_probe() RETURNS int LANGUAGE sql
           BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END`,
        'DROP FUNCTION tx_control_probe()',
      ];
  const id = await app.host.withTransaction(async () => {
    for (const sql of statements) await app.host.manager.query(sql);
    await app.host.getRepository(Order).insert({ label });
    return app.plain.add({ label });
  });
  expect(await rows(label)).toBe(1);
  await waitFor(() => inRedis(app.plainBull, id), `job ${id}`, 5000);
});

it('should not check statements outside scopes (a query runner of your own)', async () => {
  const runner = app.ds.createQueryRunner();
  try {
    await expect(runner.query('BEGIN')).resolves.toBeDefined();
    await expect(runner.query('SAVEPOINT own')).resolves.toBeDefined();
    await expect(runner.query('ROLLBACK')).resolves.toBeDefined();
    await runner.startTransaction();
    await expect(runner.commitTransaction()).resolves.toBeUndefined();
  } finally {
    await runner.release();
  }
});

it("should leave NESTED scopes (the library's own savepoints) working", async () => {
  const label = uniqueName('nested');
  const kept = await app.host.withTransaction(async () => {
    await app.host
      .withTransaction(
        async () => {
          await app.host.getRepository(Order).insert({ label });
          await app.plain.add({ label });
          throw new Error('undo');
        },
        { propagation: Propagation.Nested },
      )
      .catch(() => undefined);
    await app.host.getRepository(Order).insert({ label });
    return app.plain.add({ label });
  });
  expect(await rows(label)).toBe(1);
  await waitFor(() => inRedis(app.plainBull, kept), `job ${kept}`, 5000);
});

describe('recognising transaction control in SQL text (model-based)', () => {
  type Part = { sql: string; control: boolean };
  const word = (w: string) =>
    fc
      .array(fc.boolean(), { minLength: w.length, maxLength: w.length })
      .map((upper) =>
        [...w].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join(''),
      );
  /** Text with the characters that trip a naive scanner. */
  const tricky = fc
    .array(
      fc.constantFrom(
        ';',
        ' COMMIT',
        ' rollback ',
        '--',
        '/*',
        '*/',
        '#',
        "'",
        '"',
        '`',
        '$$',
        '$t$',
        '\\',
        '\n',
        'x',
        ' ',
      ),
      { maxLength: 12 },
    )
    .map((parts) => parts.join(''));
  const withoutCommentMarks = (text: string) => {
    let t = text;
    while (/\*\/|\/\*/.test(t)) t = t.replace(/\*\/|\/\*/g, '');
    return t;
  };
  const escape = (text: string, quote: string, backslash: boolean) =>
    (backslash ? text.replace(/\\/g, '\\\\') : text)
      .split(quote)
      .join(quote + quote);
  /** A literal, quoted identifier or comment that holds `tricky` text. */
  const hidden = (d: SqlDialect) =>
    tricky.chain((t) => {
      const common = [
        // NOTE: MySQL reads backslash escapes in every string, Postgres in E'...' only.
        d === 'mysql'
          ? `'${t.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`
          : `'${escape(t, "'", false)}'`,
        `/* ${withoutCommentMarks(t)} */`,
        `-- ${t.replace(/\n/g, ' ')}\n`,
      ];
      const own =
        d === 'mysql'
          ? [
              `"${escape(t, '"', true)}"`,
              `\`${t.replace(/`/g, '``')}\``,
              `# ${t.replace(/\n/g, ' ')}\n`,
            ]
          : [
              `"${t.replace(/"/g, '""')}"`,
              `E'${t.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`,
              `$q$${t.replace(/\$q\$/g, '')}$q$`,
            ];
      return fc.constantFrom(...common, ...own);
    });
  const controlStatement = (d: SqlDialect) =>
    fc
      .constantFrom(
        'begin',
        'commit',
        'rollback',
        'end',
        'abort',
        'savepoint s',
        'release savepoint s',
        'rollback to savepoint s',
        'start transaction',
        'prepare transaction',
        ...(d === 'mysql' ? ['xa start'] : []),
      )
      .chain((text) =>
        fc.tuple(...text.split(' ').map(word)).map((words) => words.join(' ')),
      );
  const plainStatement = (d: SqlDialect) =>
    fc
      .tuple(
        fc.constantFrom(
          'SELECT',
          'insert into t values',
          'UPDATE t SET c =',
          'with x as (select 1) select',
          'PREPARE p AS SELECT',
          'start replica',
          'DO',
          'SELECT case when true then 1',
        ),
        fc.array(hidden(d), { maxLength: 3 }),
      )
      .map(([head, parts]) => `${head} ${parts.join(' ')}`);
  const statement = (d: SqlDialect): fc.Arbitrary<Part> =>
    fc.oneof(
      controlStatement(d).map((sql) => ({ sql, control: true })),
      plainStatement(d).map((sql) => ({ sql, control: false })),
      plainStatement(d).map((sql) => ({ sql, control: false })),
    );
  const script = (d: SqlDialect) =>
    fc.tuple(
      fc.array(
        fc.tuple(
          fc.array(hidden(d), { maxLength: 2 }).map((lead) =>
            // NOTE: only comments may lead a statement (a literal first is not a statement head).
            lead.filter((p) => /^(\/\*|--|#)/.test(p)).join(' '),
          ),
          statement(d),
        ),
        { minLength: 1, maxLength: 4 },
      ),
      fc.constantFrom('', ';', ' ; '),
    );

  it.each(['postgres', 'mysql'] as const)(
    'should find a control statement in %s text exactly when the text has one',
    (d) => {
      fc.assert(
        fc.property(script(d), ([statements, tail]) => {
          const text =
            statements.map(([lead, s]) => `${lead} ${s.sql}`).join(';\n') +
            tail;
          const expected = statements.some(([, s]) => s.control);
          expect({
            text,
            found: transactionControlIn(text, d) !== undefined,
          }).toEqual({ text, found: expected });
        }),
        { numRuns: RUNS },
      );
    },
  );
});
