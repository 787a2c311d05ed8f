import { INestApplication, Injectable } from '@nestjs/common';
import { randomUUID } from 'crypto';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  Propagation,
  Transactional,
  TransactionAbortedError,
  TransactionAwareQueue,
  TransactionHost,
  TransactionRunner,
  UnexpectedRollbackError,
} from '../src';
import { dbQuery, deadlockVictim } from './support/db';
import { itOnMariaDb, onMariaDb, uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
} from './support/lib-app';

/*
 * The MySQL/MariaDB trap: a deadlock (1213), among other errors, rolls back the WHOLE
 * transaction, and the connection goes on in autocommit mode. Code that catches the error and
 * carries on would commit its later statements one by one, and COMMIT would "succeed", flushing
 * the jobs of work that was half rolled back. Postgres aborts the transaction instead (40P01,
 * then 25P02 for every statement). The same cases run on both databases; where the databases
 * differ, each expectation says which one it is.
 */

const QUEUE = uniqueName('implicit-rollback');
const events: string[] = [];

@Injectable()
class Orders {
  constructor(
    private readonly tx: TransactionHost,
    private readonly dataSource: DataSource,
    @InjectTransactionAwareQueue(QUEUE)
    private readonly queue: TransactionAwareQueue<{ label: string }>,
  ) {}

  /** Inserts a row and queues its job. */
  async write(label: string, jobs: string[]): Promise<void> {
    await dbQuery(
      this.tx.manager,
      'INSERT INTO tx_spec_orders (id, label, "createdAt") VALUES ($1, $2, now())',
      [randomUUID(), label],
    );
    jobs.push(await this.queue.add({ label }));
  }

  /** Writes, loses a deadlock, catches the error, then writes again and returns normally. */
  @Transactional()
  async deadlockSwallowed(label: string, jobs: string[]) {
    void this.tx.afterCommit(() => events.push('after-commit'));
    this.tx.afterRollback(() => events.push('after-rollback'));
    await this.write(`${label}-before`, jobs);
    await deadlockVictim(this.tx.manager, this.dataSource).catch(
      (error: { driverError?: { code?: string } }) =>
        events.push(`deadlock ${error.driverError?.code}`),
    );
    await this.write(`${label}-after`, jobs).catch((error: Error) =>
      events.push(`write after: ${error.constructor.name}`),
    );
  }

  /** Writes, then a NESTED scope loses a deadlock and swallows it; the outer scope goes on. */
  @Transactional()
  async outerOfDeadlockedNested(label: string, jobs: string[]) {
    await this.write(`${label}-outer`, jobs);
    await this.nestedDeadlock(label, jobs).catch((error: Error) =>
      events.push(`outer caught ${error.constructor.name}`),
    );
    await this.write(`${label}-after`, jobs).catch((error: Error) =>
      events.push(`write after: ${error.constructor.name}`),
    );
  }

  @Transactional({ propagation: Propagation.Nested })
  async nestedDeadlock(label: string, jobs: string[]) {
    await this.write(`${label}-nested`, jobs);
    await deadlockVictim(this.tx.manager, this.dataSource).catch(() =>
      events.push('nested caught'),
    );
  }

  /** Writes, then waits for a lock past the lock wait timeout and catches the error. */
  @Transactional()
  async lockTimeoutSwallowed(label: string, jobs: string[], lockId: string) {
    await this.write(`${label}-before`, jobs);
    await dbQuery(
      this.tx.manager,
      onMariaDb
        ? 'SET SESSION innodb_lock_wait_timeout = 1'
        : "SET LOCAL lock_timeout = '200ms'",
    );
    await dbQuery(
      this.tx.manager,
      'SELECT n FROM tx_spec_locks WHERE id = $1 FOR UPDATE',
      [lockId],
    ).catch((error: { driverError?: { code?: string } }) =>
      events.push(`lock timeout ${error.driverError?.code}`),
    );
    if (onMariaDb) {
      await dbQuery(
        this.tx.manager,
        'SET SESSION innodb_lock_wait_timeout = 50',
      );
    }
    await this.write(`${label}-after`, jobs).catch((error: Error) =>
      events.push(`write after: ${error.constructor.name}`),
    );
  }

  /** Writes, then runs DDL (MySQL commits implicitly before it), then writes again. */
  @Transactional()
  async ddlInside(label: string, jobs: string[]) {
    await this.write(`${label}-before`, jobs);
    await dbQuery(
      this.tx.manager,
      'CREATE TABLE IF NOT EXISTS tx_spec_ddl (id int PRIMARY KEY)',
    );
    await this.write(`${label}-after`, jobs).catch((error: Error) =>
      events.push(`write after: ${error.constructor.name}`),
    );
  }
}

describe('when the database rolls a transaction back on its own and the code carries on', () => {
  let app: INestApplication;
  let orders: Orders;
  let runner: TransactionRunner;

  const rows = async (prefix: string): Promise<string[]> =>
    (
      await dbQuery(
        app.get(DataSource),
        'SELECT label FROM tx_spec_orders WHERE label LIKE $1 ORDER BY label',
        [`${prefix}%`],
      )
    ).map((row: { label: string }) => row.label);
  const jobsInRedis = async (jobs: string[]) =>
    Promise.all(jobs.map((id) => inRedis(bullQueue(app, QUEUE), id)));

  beforeAll(async () => {
    app = await createLibApp({
      providers: [Orders],
      queues: [{ name: QUEUE }],
      listen: false,
    });
    orders = app.get(Orders);
    runner = app.get(TransactionRunner);
  });

  afterAll(() => closeLibApp(app, [QUEUE]));

  beforeEach(() => {
    events.length = 0;
  });

  it('should refuse the statements after a deadlock, reject with UnexpectedRollbackError, and keep no row and no job', async () => {
    const label = uniqueName('deadlock');
    const jobs: string[] = [];
    const committed = runner.stats.committed;

    const error = await orders
      .deadlockSwallowed(label, jobs)
      .catch((e: unknown) => e);

    expect(error).toBeInstanceOf(UnexpectedRollbackError);
    expect(events).toEqual([
      onMariaDb ? 'deadlock ER_LOCK_DEADLOCK' : 'deadlock 40P01',
      // MariaDB: refused by the library (the database would autocommit it); Postgres: 25P02.
      onMariaDb
        ? 'write after: TransactionAbortedError'
        : 'write after: QueryFailedError',
      'after-rollback',
    ]);
    expect(await rows(label)).toEqual([]);
    expect(jobs).toHaveLength(1);
    expect(await jobsInRedis(jobs)).toEqual([false]);
    expect(runner.stats.committed).toBe(committed);
  });

  it('should reject the NESTED scope that swallowed a deadlock; on MariaDB the whole transaction is gone, on Postgres the outer one goes on', async () => {
    const label = uniqueName('nested-deadlock');
    const jobs: string[] = [];

    const error = await orders
      .outerOfDeadlockedNested(label, jobs)
      .catch((e: unknown) => e);

    if (onMariaDb) {
      // The deadlock rolled back the outer work too: nothing may commit.
      expect(error).toBeInstanceOf(UnexpectedRollbackError);
      expect(events).toEqual([
        'nested caught',
        'outer caught UnexpectedRollbackError',
        'write after: TransactionAbortedError',
      ]);
      expect(await rows(label)).toEqual([]);
      expect(jobs).toHaveLength(2);
      expect(await jobsInRedis(jobs)).toEqual([false, false]);
    } else {
      // ROLLBACK TO SAVEPOINT undoes the abort: the outer transaction commits its own work.
      expect(error).toBeUndefined();
      expect(events).toEqual([
        'nested caught',
        'outer caught UnexpectedRollbackError',
      ]);
      expect(await rows(label)).toEqual([`${label}-after`, `${label}-outer`]);
      expect(await jobsInRedis(jobs)).toEqual([true, false, true]);
    }
  });

  it('should keep the transaction after a lock wait timeout that rolled back only the statement (MariaDB without innodb_rollback_on_timeout), and abort it on Postgres', async () => {
    const label = uniqueName('lock-timeout');
    const jobs: string[] = [];
    const dataSource = app.get(DataSource);
    const lockId = uniqueName('lock');
    await dbQuery(
      dataSource,
      'INSERT INTO tx_spec_locks (id, n) VALUES ($1, 0)',
      [lockId],
    );
    const holder = dataSource.createQueryRunner();
    await holder.connect();
    await holder.startTransaction();
    try {
      await dbQuery(
        holder,
        'SELECT n FROM tx_spec_locks WHERE id = $1 FOR UPDATE',
        [lockId],
      );
      const error = await orders
        .lockTimeoutSwallowed(label, jobs, lockId)
        .catch((e: unknown) => e);

      if (onMariaDb) {
        expect(error).toBeUndefined();
        expect(events).toEqual(['lock timeout ER_LOCK_WAIT_TIMEOUT']);
        expect(await rows(label)).toEqual([
          `${label}-after`,
          `${label}-before`,
        ]);
        expect(await jobsInRedis(jobs)).toEqual([true, true]);
      } else {
        expect(error).toBeInstanceOf(UnexpectedRollbackError);
        expect(events).toEqual([
          'lock timeout 55P03',
          'write after: QueryFailedError',
        ]);
        expect(await rows(label)).toEqual([]);
        expect(await jobsInRedis(jobs)).toEqual([false]);
      }
    } finally {
      await holder.rollbackTransaction();
      await holder.release();
    }
  });

  itOnMariaDb(
    'should refuse the statements after DDL committed the transaction implicitly, reject with TransactionAbortedError, and enqueue no job (MariaDB only: Postgres DDL is transactional)',
    async () => {
      const label = uniqueName('ddl');
      const jobs: string[] = [];

      const error = await orders
        .ddlInside(label, jobs)
        .catch((e: unknown) => e);

      expect(error).toBeInstanceOf(TransactionAbortedError);
      expect((error as TransactionAbortedError).outcome).toBe('ended');
      expect(events).toEqual(['write after: TransactionAbortedError']);
      // What ran before the DDL was committed by it (MySQL's rule); its job is not sent.
      expect(await rows(label)).toEqual([`${label}-before`]);
      expect(await jobsInRedis(jobs)).toEqual([false]);
    },
  );
});
