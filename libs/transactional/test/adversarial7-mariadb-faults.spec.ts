import { randomUUID } from 'crypto';
import * as fc from 'fast-check';
import { DataSource, QueryRunner } from 'typeorm';
import { Propagation, TransactionAbortedError } from '../src';
import { useAdversarialApp } from './support/adversarial-app';
import { backendId, dbQuery } from './support/db';
import { onMariaDb, testDataSourceOptions, uniqueName } from './support/env';
import { inRedis, waitFor } from './support/lib-app';

/*
 * MariaDB-only: real database faults inside scopes (crossed locks between two library
 * transactions, KILL QUERY / KILL CONNECTION of the scope's own connection at several points,
 * statement-only errors), and a model of statement errors vs whole-transaction rollbacks.
 * Checked each time: rows vs jobs (Redis) vs outbox rows, and the error the caller gets.
 */
const describeMariaDb = onMariaDb ? describe : describe.skip;
const OUTBOX = 'a7_faults_outbox';

describeMariaDb('adversarial7 (MariaDB): database faults inside scopes', () => {
  const app = useAdversarialApp({
    plain: uniqueName('a7f-plain'),
    durable: uniqueName('a7f-durable'),
    outboxTable: OUTBOX,
  });
  let admin: DataSource;

  beforeAll(async () => {
    admin = new DataSource(testDataSourceOptions());
    await admin.initialize();
    await admin.query('DROP TABLE IF EXISTS a7_child');
    await admin.query('DROP TABLE IF EXISTS a7_parent');
    await admin.query(
      'CREATE TABLE a7_parent (id int PRIMARY KEY) ENGINE=InnoDB',
    );
    await admin.query(
      `CREATE TABLE a7_child (id varchar(64) PRIMARY KEY, parent int NOT NULL,
         FOREIGN KEY (parent) REFERENCES a7_parent (id)) ENGINE=InnoDB`,
    );
    await admin.query('INSERT INTO a7_parent (id) VALUES (1)');
  });
  afterAll(async () => {
    await admin?.destroy();
  });

  interface Write {
    label: string;
    plain: string;
    durable: string;
  }

  async function insert(label: string, id = randomUUID()) {
    await dbQuery(
      app.host.manager,
      'INSERT INTO tx_spec_orders (id, label, "createdAt") VALUES ($1, $2, now())',
      [id, label],
    );
  }

  async function write(label: string): Promise<Write> {
    await insert(label);
    const plain = await app.plain.add({ label });
    const durable = await app.durable.add({ label });
    return { label, plain, durable };
  }

  async function committed(label: string): Promise<boolean> {
    const found = await dbQuery(
      admin,
      'SELECT 1 FROM tx_spec_orders WHERE label = $1',
      [label],
    );
    return found.length > 0;
  }

  async function outboxRows(label: string): Promise<number> {
    const [row] = await admin.query(
      `SELECT COUNT(*) AS n FROM ${OUTBOX} WHERE JSON_UNQUOTE(JSON_EXTRACT(data, '$.label')) = ?`,
      [label],
    );
    return Number(row.n);
  }

  /** Per write: row committed, plain job, durable job (fast path), outbox row. */
  async function state(w: Write) {
    return {
      label: w.label,
      row: await committed(w.label),
      plainJob: await inRedis(app.plainBull, w.plain),
      durableJob: await inRedis(app.durableBull, w.durable),
      outbox: (await outboxRows(w.label)) > 0,
    };
  }

  function consistent(s: Awaited<ReturnType<typeof state>>, kept: boolean) {
    return {
      label: s.label,
      row: kept,
      plainJob: kept,
      durableJob: kept,
      outbox: kept,
    };
  }

  async function expectKept(writes: Write[], kept: boolean) {
    const states = await Promise.all(writes.map(state));
    expect(states).toEqual(states.map((s) => consistent(s, kept)));
  }

  /**
   * Makes the transaction of `manager` the victim of a real deadlock against another session
   * that has written far more (InnoDB rolls back the lighter one). Rejects with the victim's
   * error; rejects with a plain Error if the other session lost instead.
   */
  async function heavyDeadlockVictim(manager: {
    query(sql: string, params?: unknown[]): Promise<any>;
  }): Promise<never> {
    const tag = uniqueName('a7f-hdl');
    const [a, b] = [`${tag}-a`, `${tag}-b`];
    await admin.query(
      'INSERT INTO tx_spec_locks (id, n) VALUES (?, 0), (?, 0)',
      [a, b],
    );
    const other = admin.createQueryRunner();
    await other.connect();
    await other.startTransaction();
    try {
      await other.query(
        `INSERT INTO tx_spec_locks (id, n) SELECT CONCAT(?, seq), 0 FROM seq_1_to_200`,
        [`${tag}-w`],
      );
      await other.query('UPDATE tx_spec_locks SET n = n + 1 WHERE id = ?', [a]);
      await manager.query(
        'SELECT n FROM tx_spec_locks WHERE id = ? FOR UPDATE',
        [b],
      );
      const blocked = manager
        .query('SELECT n FROM tx_spec_locks WHERE id = ? FOR UPDATE', [a])
        .then(
          () => undefined,
          (error: unknown) => error,
        );
      await new Promise((resolve) => setTimeout(resolve, 150));
      const closing = other
        .query('UPDATE tx_spec_locks SET n = n + 1 WHERE id = ?', [b])
        .catch((error: unknown) => error);
      const error = await blocked;
      await closing;
      if (!error) throw new Error('the other session lost the deadlock');
      throw error;
    } finally {
      await other.rollbackTransaction().catch(() => undefined);
      await other.release();
    }
  }

  function isDeadlock(error: unknown): boolean {
    return (
      (error as { driverError?: { code?: string } })?.driverError?.code ===
      'ER_LOCK_DEADLOCK'
    );
  }

  /** Kills `what` of connection `pid` from the admin DataSource. */
  async function kill(what: 'QUERY' | 'CONNECTION', pid: number) {
    await admin.query(`KILL ${what} ${Number(pid)}`);
  }

  /** Waits until connection `pid` runs a statement whose text starts with `prefix`. */
  async function waitRunning(pid: number, prefix: string) {
    await waitFor(
      async () =>
        (
          await admin.query(
            'SELECT 1 FROM information_schema.processlist WHERE id = ? AND info LIKE ?',
            [pid, `${prefix}%`],
          )
        ).length > 0,
      `connection ${pid} to run ${prefix}`,
      5_000,
    );
  }

  /** A transaction of another session that holds the insert gap of `queue` in the outbox. */
  async function holdOutboxGap(queue: string): Promise<QueryRunner> {
    const holder = admin.createQueryRunner();
    await holder.connect();
    await holder.startTransaction('REPEATABLE READ');
    await holder.query(`SELECT id FROM ${OUTBOX} WHERE queue = ? FOR UPDATE`, [
      queue,
    ]);
    return holder;
  }

  it('should commit the winner of a deadlock between two durable scopes with its jobs, and keep nothing of the victim that swallowed it', async () => {
    const tag = uniqueName('a7f-dl');
    const [a, b] = [`${tag}-a`, `${tag}-b`];
    await dbQuery(
      admin,
      'INSERT INTO tx_spec_locks (id, n) VALUES ($1, 0), ($2, 0)',
      [a, b],
    );
    let arrived = 0;
    let release!: () => void;
    const bothLocked = new Promise<void>((resolve) => (release = resolve));
    const events: string[] = [];
    const run = (name: string, first: string, second: string) => {
      const writes: Write[] = [];
      const done = app.host
        .withTransaction(async () => {
          writes.push(await write(`${tag}-${name}-1`));
          await dbQuery(
            app.host.manager,
            'SELECT n FROM tx_spec_locks WHERE id = $1 FOR UPDATE',
            [first],
          );
          if (++arrived === 2) release();
          await bothLocked;
          await dbQuery(
            app.host.manager,
            'UPDATE tx_spec_locks SET n = n + 1 WHERE id = $1',
            [second],
          ).catch((e: { driverError?: { code?: string } }) =>
            events.push(`${name}: ${e.driverError?.code}`),
          );
          writes.push(
            await write(`${tag}-${name}-2`).catch((e: Error) => {
              events.push(`${name}: after ${e.constructor.name}`);
              return { label: `${tag}-${name}-2`, plain: '-', durable: '-' };
            }),
          );
        })
        .then(
          () => 'committed',
          (e: Error) => e.constructor.name,
        );
      return { done, writes };
    };
    const x = run('x', a, b);
    const y = run('y', b, a);
    const outcomes = [await x.done, await y.done];

    expect([...outcomes].sort()).toEqual([
      'UnexpectedRollbackError',
      'committed',
    ]);
    const victim = outcomes[0] === 'committed' ? y : x;
    const winner = victim === x ? y : x;
    const victimName = victim === x ? 'x' : 'y';
    expect(events).toEqual([
      `${victimName}: ER_LOCK_DEADLOCK`,
      `${victimName}: after TransactionAbortedError`,
    ]);
    await expectKept(winner.writes, true);
    await expectKept(victim.writes.slice(0, 1), false);
    expect(await committed(victim.writes[1].label)).toBe(false);
  });

  it('should reject a scope whose connection was killed (KILL CONNECTION) after it swallowed the error, keeping nothing', async () => {
    const label = uniqueName('a7f-killconn');
    const writes: Write[] = [];
    const seen: string[] = [];
    const error = await app.host
      .withTransaction(async () => {
        writes.push(await write(`${label}-1`));
        await kill('CONNECTION', await backendId(app.host.manager));
        await insert(`${label}-2`).catch((e: Error) =>
          seen.push(e.constructor.name),
        );
        await insert(`${label}-3`).catch((e: Error) =>
          seen.push(e.constructor.name),
        );
      })
      .catch((e: unknown) => e);
    expect(seen).toEqual(['QueryFailedError', 'TransactionAbortedError']);
    await expectKept(writes, false);
    expect(await committed(`${label}-3`)).toBe(false);
    // README (the MySQL trap, "a lost or killed connection"): the transaction ends with
    // UnexpectedRollbackError.
    expect(
      `${(error as Error).constructor.name}: ${(error as Error).message}`,
    ).toMatch(/^UnexpectedRollbackError: /);
  });

  it('should reject (not resolve) a scope whose connection was killed right before its COMMIT, keeping nothing', async () => {
    const label = uniqueName('a7f-killcommit');
    const writes: Write[] = [];
    const error = await app.host
      .withTransaction(async () => {
        writes.push(await write(`${label}-1`));
        const pid = await backendId(app.host.manager);
        await kill('CONNECTION', pid);
        await waitFor(
          async () =>
            (
              await admin.query(
                'SELECT 1 FROM information_schema.processlist WHERE id = ?',
                [pid],
              )
            ).length === 0,
          'the killed connection to be gone',
          5_000,
        );
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect(String((error as Error).message)).not.toBe('');
    await expectKept(writes, false);
  });

  it('should reject a scope whose outbox INSERT was killed with its connection while it waited for a lock, and keep nothing', async () => {
    const label = uniqueName('a7f-killoutbox');
    const holder = await holdOutboxGap(app.durable.name);
    const seen: string[] = [];
    try {
      const error = await app.host
        .withTransaction(async () => {
          await insert(`${label}-1`);
          const pid = await backendId(app.host.manager);
          const adding = app.durable.add({ label: `${label}-1` }).then(
            () => 'added',
            (e: Error) => e.constructor.name,
          );
          await waitRunning(pid, 'INSERT INTO');
          await kill('CONNECTION', pid);
          seen.push(await adding);
          await insert(`${label}-2`).catch((e: Error) =>
            seen.push(e.constructor.name),
          );
        })
        .catch((e: unknown) => e);
      expect([...seen, String(error)]).toEqual([
        'QueryFailedError',
        'TransactionAbortedError',
        expect.anything(),
      ]);
      expect(
        `${(error as Error).constructor.name}: ${(error as Error).message}`,
      ).toMatch(/^UnexpectedRollbackError: /);
    } finally {
      await holder.rollbackTransaction();
      await holder.release();
    }
    expect(await committed(`${label}-1`)).toBe(false);
    expect(await committed(`${label}-2`)).toBe(false);
    expect(await outboxRows(`${label}-1`)).toBe(0);
  });

  it('should enqueue no job for a durable add() whose outbox INSERT was interrupted by KILL QUERY (the scope goes on and commits)', async () => {
    const label = uniqueName('a7f-killquery');
    const holder = await holdOutboxGap(app.durable.name);
    let added = 'not run';
    const writes: Write[] = [];
    try {
      await app.host.withTransaction(async () => {
        await insert(`${label}-1`);
        const pid = await backendId(app.host.manager);
        const adding = app.durable
          .add({ label: `${label}-1` }, { jobId: `${label}-job` })
          .then(
            () => 'added',
            (e: { driverError?: { code?: string } }) =>
              String(e.driverError?.code),
          );
        await waitRunning(pid, 'INSERT INTO');
        await kill('QUERY', pid);
        added = await adding;
        await holder.rollbackTransaction();
        // The statement alone was rolled back: the transaction goes on.
        writes.push(await write(`${label}-2`));
      });
    } finally {
      if (holder.isTransactionActive) await holder.rollbackTransaction();
      await holder.release();
    }
    expect(added).toBe('ER_QUERY_INTERRUPTED');
    expect(await committed(`${label}-1`)).toBe(true);
    await expectKept(writes, true);
    // The add() that failed must not be enqueued by the fast path or the relay.
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(await outboxRows(`${label}-1`)).toBe(0);
    expect(await inRedis(app.durableBull, `${label}-job`)).toBe(false);
  });

  it('should keep nothing of a NESTED scope rolled back while KILL QUERY hits its ROLLBACK TO SAVEPOINT', async () => {
    const label = uniqueName('a7f-sp');
    const childPrefix = `${label}-c`;
    let nestedJob = '';
    let pid = 0;
    const outer: Write[] = [];
    let killer: Promise<unknown> = Promise.resolve();
    const result = await app.host
      .withTransaction(async () => {
        outer.push(await write(`${label}-outer`));
        pid = await backendId(app.host.manager);
        await app.host
          .withTransaction(
            async () => {
              await insert(`${label}-nested`);
              nestedJob = await app.durable.add({ label: `${label}-nested` });
              // Enough undo that ROLLBACK TO takes a while.
              await app.host.manager.query(
                `INSERT INTO a7_child (id, parent)
                 SELECT CONCAT(?, seq), 1 FROM seq_1_to_40000`,
                [childPrefix],
              );
              killer = waitRunning(pid, 'ROLLBACK TO').then(() =>
                kill('QUERY', pid),
              );
              throw new Error('nested refused');
            },
            { propagation: Propagation.Nested },
          )
          .catch(() => undefined);
        await killer.catch(() => undefined);
        outer.push(await write(`${label}-outer2`));
      })
      .then(
        () => 'committed',
        (e: Error) => e.constructor.name,
      );
    const [{ n }] = await admin.query(
      'SELECT COUNT(*) AS n FROM a7_child WHERE id LIKE ?',
      [`${childPrefix}%`],
    );
    const nested = {
      row: await committed(`${label}-nested`),
      children: Number(n),
      job: await inRedis(app.durableBull, nestedJob),
    };
    if (result === 'committed') {
      // The savepoint's work must be gone with its jobs: both or neither.
      expect(nested).toEqual({ row: false, children: 0, job: false });
      await expectKept(outer, true);
    } else {
      expect(nested).toEqual({ row: false, children: 0, job: false });
      await expectKept(outer, false);
    }
  });

  describe('model: statement-only errors vs whole-transaction rollbacks', () => {
    type Op =
      | { kind: 'write' }
      | { kind: 'dup' }
      | { kind: 'tooLong' }
      | { kind: 'fk' }
      | { kind: 'deadlock' }
      | { kind: 'nested'; ops: Op[]; fails: boolean; viaManager: boolean };
    const leaf: fc.Arbitrary<Op> = fc.oneof(
      { weight: 5, arbitrary: fc.constant<Op>({ kind: 'write' }) },
      { weight: 2, arbitrary: fc.constant<Op>({ kind: 'dup' }) },
      { weight: 2, arbitrary: fc.constant<Op>({ kind: 'tooLong' }) },
      { weight: 2, arbitrary: fc.constant<Op>({ kind: 'fk' }) },
      { weight: 1, arbitrary: fc.constant<Op>({ kind: 'deadlock' }) },
    );
    // NESTED scopes two deep, opened by withTransaction or by TypeORM's manager.transaction().
    const { op } = fc.letrec<{ op: Op }>((tie) => ({
      op: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        { weight: 4, arbitrary: leaf },
        {
          weight: 1,
          arbitrary: fc.record({
            kind: fc.constant('nested' as const),
            ops: fc.array(tie('op'), { minLength: 1, maxLength: 3 }),
            fails: fc.boolean(),
            viaManager: fc.boolean(),
          }),
        },
      ),
    }));

    it('should keep a row with its jobs and outbox row iff the transaction (and savepoint) it was written in committed', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(op, { minLength: 1, maxLength: 6 }),
          fc.boolean(),
          async (ops, throwsAtEnd) => {
            const tag = uniqueName('a7m');
            let n = 0;
            let lost = false;
            const writes: { w: Write; expected: boolean }[] = [];
            const runOps = async (list: Op[], inFailing: boolean) => {
              for (const o of list) {
                const label = `${tag}-${n++}`;
                if (o.kind === 'write') {
                  const w = await write(label).catch(() => undefined);
                  if (w) writes.push({ w, expected: !inFailing });
                  else if (!lost) throw new Error('write failed unexpectedly');
                } else if (o.kind === 'dup') {
                  const id = randomUUID();
                  await insert(`${label}-dup1`, id).catch(() => undefined);
                  await insert(`${label}-dup2`, id).catch(() => undefined);
                } else if (o.kind === 'tooLong') {
                  await insert('x'.repeat(300)).catch(() => undefined);
                } else if (o.kind === 'fk') {
                  await app.host.manager
                    .query(
                      'INSERT INTO a7_child (id, parent) VALUES (?, 999)',
                      [label],
                    )
                    .catch(() => undefined);
                } else if (o.kind === 'deadlock') {
                  if (lost) continue;
                  const dl = await heavyDeadlockVictim(app.host.manager).catch(
                    (e: unknown) => e,
                  );
                  if (isDeadlock(dl)) lost = true;
                } else {
                  const body = async () => {
                    await runOps(o.ops, inFailing || o.fails);
                    if (o.fails) throw new Error('nested fails');
                  };
                  await (
                    o.viaManager && !lost
                      ? app.host.manager.transaction(body)
                      : app.host.withTransaction(body, {
                          propagation: Propagation.Nested,
                        })
                  ).catch(() => undefined);
                }
              }
            };
            const outcome = await app.host
              .withTransaction(async () => {
                await runOps(ops, false);
                if (throwsAtEnd) throw new Error('outer fails');
              })
              .then(
                () => 'committed',
                (e: Error) => e.constructor.name,
              );
            // NOTE: after a deadlock the class is checked by its own test below; here either
            // refusal counts as "rolled back".
            const expectedOutcome = throwsAtEnd
              ? 'Error'
              : lost
                ? outcome === 'TransactionAbortedError'
                  ? outcome
                  : 'UnexpectedRollbackError'
                : 'committed';
            expect(outcome).toBe(expectedOutcome);
            const states = await Promise.all(writes.map((x) => state(x.w)));
            expect(states).toEqual(
              writes.map((x, i) =>
                consistent(
                  states[i],
                  x.expected && outcome === 'committed' && !lost,
                ),
              ),
            );
          },
        ),
        { numRuns: 40 },
      );
    });
  });

  it('should end a scope with durable jobs that swallowed a deadlock with UnexpectedRollbackError, as a scope with plain jobs', async () => {
    const label = uniqueName('a7f-dl-durable');
    const writes: Write[] = [];
    const error = await app.host
      .withTransaction(async () => {
        writes.push(await write(label));
        // Takes > graceMs / 2 (100 ms): the outbox's grace UPDATE runs before the COMMIT.
        const dl = await heavyDeadlockVictim(app.host.manager).catch(
          (e: unknown) => e,
        );
        expect(isDeadlock(dl)).toBe(true);
      })
      .catch((e: unknown) => e);
    await expectKept(writes, false);
    expect(
      `${(error as Error).constructor.name}: ${(error as Error).message}`,
    ).toMatch(/^UnexpectedRollbackError: /);
  });

  it('should name the transaction and the cause in TransactionAbortedError', async () => {
    const seen: unknown[] = [];
    await app.host
      .withTransaction(async () => {
        await heavyDeadlockVictim(app.host.manager).catch(() => undefined);
        await insert(uniqueName('a7f-msg')).catch((e: unknown) => seen.push(e));
      })
      .catch(() => undefined);
    expect(seen[0]).toBeInstanceOf(TransactionAbortedError);
    const error = seen[0] as TransactionAbortedError;
    expect(error.outcome).toBe('rolled-back');
    expect(error.message).toContain('"default"');
    expect(error.reason).toContain('ER_LOCK_DEADLOCK');
    expect(error.message).toMatch(/retry the whole transaction/);
  });
});
