import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
import { MysqlTransactionGuard } from './dialect/mysql-transaction-guard';
import {
  canDeferBegin,
  DeferredBegin,
  LeadingStatement,
} from './dialect/pg-deferred-begin';
import { dialectOf, quoteIdentifier, SqlDialect } from './dialect/sql-dialect';
import { transactionControlIn } from './dialect/transaction-control';
import { DeadlineQueue } from './deadline-queue';
import { ConnectionAcquireTimeoutError } from './errors/connection-acquire-timeout.error';
import { TransactionControlError } from './errors/transaction-control.error';
import { TransactionClosedError } from './errors/transaction-closed.error';
import type {
  BeginContext,
  CommitOutcome,
  TransactionDriver,
  TransactionHandle,
} from './transaction-driver';
import type { IsolationLevel } from './transactional.interfaces';

/** The isolation levels TypeORM sends as they are written (`IsolationLevel`). */
const ISOLATION_LEVELS: readonly string[] = [
  'READ UNCOMMITTED',
  'READ COMMITTED',
  'REPEATABLE READ',
  'SERIALIZABLE',
];

const SAVEPOINT_SQL = {
  create: 'SAVEPOINT',
  release: 'RELEASE SAVEPOINT',
  rollback: 'ROLLBACK TO SAVEPOINT',
} as const;

/** The part of node-postgres' `Client` the handle reads; absent on other drivers. */
interface PgClient {
  getTransactionStatus?(): string | null;
  query(...args: unknown[]): unknown;
}

/** Whether `error` is Postgres' 25P02: a statement sent in a transaction already aborted. */
function inFailedTransaction(error: unknown): boolean {
  return (
    (error as { driverError?: { code?: unknown } })?.driverError?.code ===
    '25P02'
  );
}

class QueryRunnerHandle implements TransactionHandle {
  /**
   * The query runner's own `query` (through the MySQL guard), for the runner's statements:
   * savepoints, which must not wait, and which the check of `checkedQuery` would refuse.
   */
  private readonly rawQuery: QueryRunner['query'];
  /** `rawQuery` behind the refusal of transaction control sent by hand: the application's. */
  private readonly checkedQuery: QueryRunner['query'];
  private readonly dialect: SqlDialect;
  /** MySQL/MariaDB only: tells when the database has ended the transaction on its own. */
  private readonly guard?: MysqlTransactionGuard;
  /** Set once the runner commits or rolls back: its COMMIT or ROLLBACK is not refused. */
  private ending = false;

  constructor(
    private readonly queryRunner: QueryRunner,
    private readonly connectionName: string,
    /** Postgres: the BEGIN that goes out with the first statement (see DeferredBegin). */
    private readonly deferredBegin?: DeferredBegin,
  ) {
    this.dialect = dialectOf(queryRunner.connection);
    const query = queryRunner.query;
    const ending = () => this.ending;
    if (this.dialect === 'mysql') {
      const guard = new MysqlTransactionGuard(queryRunner, connectionName);
      this.guard = guard;
      this.rawQuery = function (...args: Parameters<QueryRunner['query']>) {
        const [sql] = args;
        const internal = ending() && (sql === 'COMMIT' || sql === 'ROLLBACK');
        return guard.run(() => query.apply(queryRunner, args), sql, internal);
      } as QueryRunner['query'];
    } else {
      this.rawQuery = query;
    }
    const rawQuery = this.rawQuery;
    const { dialect } = this;
    // NOTE: the runner's own COMMIT and ROLLBACK go through TypeORM's commitTransaction() and
    // rollbackTransaction(), which call queryRunner.query.
    this.checkedQuery = function (
      this: QueryRunner,
      ...args: Parameters<QueryRunner['query']>
    ) {
      const [sql] = args;
      if (ending()) {
        // NOTE: the runner's COMMIT or ROLLBACK is on its way: anything sent now would run after
        // it, on its own (autocommit), outside the transaction that ended.
        return sql === 'COMMIT' || sql === 'ROLLBACK'
          ? rawQuery.apply(queryRunner, args)
          : Promise.reject(
              new TransactionClosedError('A statement', connectionName),
            );
      }
      const control = transactionControlIn(sql, dialect);
      if (control)
        return Promise.reject(
          new TransactionControlError(control, connectionName),
        );
      return rawQuery.apply(queryRunner, args);
    } as QueryRunner['query'];
    queryRunner.query = this.checkedQuery;
    this.guardLifecycle();
  }

  /**
   * Refuses TypeORM's transaction methods on this query runner, except the runner's own calls:
   * inside a scope, `startTransaction()` would open a savepoint the runner cannot see, and the
   * others would end the transaction. (`release()` is left alone: TypeORM's
   * `DataSource.destroy()` releases every query runner in use, and a transaction still open at
   * shutdown must fail rather than commit after its queues have closed.)
   */
  private guardLifecycle() {
    const { queryRunner, connectionName } = this;
    const refuse = (what: string) =>
      Promise.reject(
        new TransactionControlError(`queryRunner.${what}()`, connectionName),
      );
    const ending = () => this.ending;
    const { commitTransaction, rollbackTransaction } = queryRunner;
    queryRunner.startTransaction = () => refuse('startTransaction');
    queryRunner.commitTransaction = function (this: QueryRunner) {
      return ending()
        ? commitTransaction.call(queryRunner)
        : refuse('commitTransaction');
    };
    queryRunner.rollbackTransaction = function (this: QueryRunner) {
      return ending()
        ? rollbackTransaction.call(queryRunner)
        : refuse('rollbackTransaction');
    };
  }

  setStatementGate(turn: () => Promise<void> | undefined): void {
    const { queryRunner } = this;
    // NOTE: TypeORM's query(query, parameters, useStructuredResult), passed on as is.
    const rawQuery = this.checkedQuery as (
      this: QueryRunner,
      query: string,
      parameters?: unknown[],
      structured?: boolean,
    ) => Promise<unknown>;
    queryRunner.query = function (
      query: string,
      parameters?: unknown[],
      structured?: boolean,
    ) {
      const wait = turn();
      return wait
        ? wait.then(() =>
            rawQuery.call(queryRunner, query, parameters, structured),
          )
        : rawQuery.call(queryRunner, query, parameters, structured);
    } as QueryRunner['query'];
  }

  get manager(): EntityManager {
    return this.queryRunner.manager;
  }

  /** node-postgres' client of this transaction, if the DataSource is Postgres. */
  private get pg(): PgClient | undefined {
    const client = (this.queryRunner as { databaseConnection?: PgClient })
      .databaseConnection;
    return typeof client?.getTransactionStatus === 'function'
      ? client
      : undefined;
  }

  setNestedTransactions(
    nested: <T>(work: () => Promise<T>) => Promise<T>,
  ): void {
    const manager = this.queryRunner.manager;
    // NOTE: TypeORM would run it as SAVEPOINT typeorm_N on this connection, a savepoint the
    // runner knows nothing of: jobs added inside would survive its rollback.
    manager.transaction = function (
      isolationOrWork: unknown,
      maybeWork?: unknown,
    ) {
      const work = (
        typeof isolationOrWork === 'function' ? isolationOrWork : maybeWork
      ) as (entityManager: EntityManager) => Promise<unknown>;
      return nested(() => work(manager));
    } as EntityManager['transaction'];
  }

  isAborted(): boolean {
    if (this.guard) return this.guard.lost?.outcome === 'rolled-back';
    // NOTE: node-postgres keeps the status of the last ReadyForQuery message: 'E' is a failed
    // transaction block (every statement but ROLLBACK is refused).
    return this.pg?.getTransactionStatus?.() === 'E';
  }

  get commitsWithStatement(): boolean {
    return this.deferredBegin !== undefined;
  }

  async commit(leading?: LeadingStatement): Promise<CommitOutcome> {
    if (this.guard) return this.commitMysql(this.guard);
    this.ending = true;
    if (leading) this.deferredBegin?.sendWithCommit(leading);
    const pg = this.pg;
    if (!pg) {
      await this.queryRunner.commitTransaction();
      return 'committed';
    }
    // NOTE: Postgres answers COMMIT of an aborted transaction with the command tag ROLLBACK
    // and no error; TypeORM drops the tag, so it is read off the client's answer.
    let tag: string | undefined;
    const query = pg.query;
    pg.query = function (this: PgClient, ...args: unknown[]) {
      const result = query.apply(this, args);
      if (result instanceof Promise) {
        return result.then((value: { command?: string }) => {
          tag = value?.command;
          return value;
        });
      }
      return result;
    };
    try {
      await this.queryRunner.commitTransaction();
    } catch (error) {
      // NOTE: the statement in front of COMMIT found the transaction aborted (a failed statement
      // whose ReadyForQuery had not arrived when isAborted() was asked): COMMIT was skipped, so
      // roll back here and report what COMMIT would have answered.
      if (!leading || !inFailedTransaction(error)) throw error;
      pg.query = query;
      await this.rollback();
      return 'rolled-back';
    } finally {
      pg.query = query;
    }
    return tag === 'ROLLBACK' ? 'rolled-back' : 'committed';
  }

  /**
   * Commits once every statement sent has settled, unless the guard found the transaction
   * gone: then it rolls back (a no-op for the server) and reports the rollback, or throws for a
   * transaction a statement ended (committed implicitly).
   */
  private async commitMysql(
    guard: MysqlTransactionGuard,
  ): Promise<CommitOutcome> {
    await guard.settled();
    if (guard.lost) {
      await this.rollback();
      if (guard.lost.outcome === 'rolled-back') return 'rolled-back';
      throw guard.refusal('COMMIT');
    }
    this.ending = true;
    await this.queryRunner.commitTransaction();
    return 'committed';
  }

  rollback(): Promise<void> {
    this.ending = true;
    const rolling = this.queryRunner.rollbackTransaction();
    // NOTE: MySQL: a transaction the database already rolled back (deadlock, lost or killed
    // connection) has nothing left to roll back; the ROLLBACK failing on a dead connection must
    // not replace the UnexpectedRollbackError the caller is owed.
    return this.guard?.lost?.outcome === 'rolled-back'
      ? rolling.catch(() => undefined)
      : rolling;
  }

  async savepoint(action: keyof typeof SAVEPOINT_SQL, name: string) {
    try {
      await this.rawQuery.call(
        this.queryRunner,
        `${SAVEPOINT_SQL[action]} ${quoteIdentifier(this.dialect, name)}`,
      );
    } catch (error) {
      // NOTE: MySQL: the whole transaction is gone, so there is nothing to roll back to.
      if (action === 'rollback' && this.guard?.lost) return;
      throw error;
    }
  }

  release(): Promise<void> {
    this.deferredBegin?.restore();
    if (this.guard?.lost?.outcome === 'ended') {
      // NOTE: MySQL: a statement that committed implicitly may have left the session in a state
      // no ROLLBACK undoes (LOCK TABLES keeps its table locks until UNLOCK TABLES or the next
      // transaction on that connection): the connection leaves the pool instead of going back,
      // or other sessions would wait on its locks until the pool happened to reuse it.
      const connection = (
        this.queryRunner as { databaseConnection?: { destroy?: () => void } }
      ).databaseConnection;
      connection?.destroy?.();
    }
    return this.queryRunner.release();
  }
}

/** `TransactionDriver` on a TypeORM DataSource: one pooled connection per transaction. */
export class TypeOrmTransactionDriver implements TransactionDriver {
  /** Deadlines of the connection waits (all `acquireTimeoutMs` long). */
  private readonly acquireDeadlines: DeadlineQueue;

  constructor(
    private readonly dataSource: DataSource,
    /** Connection name, for error messages. */
    private readonly connectionName = 'default',
    /** Longest wait for a pooled connection when a transaction opens. */
    private readonly acquireTimeoutMs = 30_000,
    /**
     * Postgres: send a transaction's BEGIN with its first statement and a statement given to
     * `commit()` with its COMMIT (see `TransactionalModuleOptions.coalesceRoundTrips`).
     */
    private readonly coalesceRoundTrips = true,
  ) {
    this.acquireDeadlines = new DeadlineQueue(acquireTimeoutMs);
  }

  get manager(): EntityManager {
    return this.dataSource.manager;
  }

  async begin(
    isolationLevel?: IsolationLevel,
    context: BeginContext = { where: 'transaction', insideTransaction: false },
  ): Promise<TransactionHandle> {
    // NOTE: TypeORM writes the level into SQL as given; with a deferred BEGIN a bad one would
    // only fail at the first statement.
    if (
      isolationLevel !== undefined &&
      !ISOLATION_LEVELS.includes(isolationLevel)
    )
      throw new TypeError(
        `Unknown isolation level ${JSON.stringify(isolationLevel)}: use one of ${ISOLATION_LEVELS.join(', ')}`,
      );
    const queryRunner = this.dataSource.createQueryRunner();
    let deferred: DeferredBegin | undefined;
    try {
      await this.connect(queryRunner, context);
      const client = (queryRunner as { databaseConnection?: unknown })
        .databaseConnection;
      if (this.coalesceRoundTrips && canDeferBegin(client))
        deferred = new DeferredBegin(client);
      await queryRunner.startTransaction(isolationLevel);
    } catch (error) {
      deferred?.restore();
      // NOTE: after an acquire timeout the connection is released when the pool hands it over.
      if (!(error instanceof ConnectionAcquireTimeoutError))
        await queryRunner.release().catch(() => undefined);
      throw error;
    }
    return new QueryRunnerHandle(queryRunner, this.connectionName, deferred);
  }

  /** Takes a pooled connection for `queryRunner`, waiting at most `acquireTimeoutMs`. */
  private connect(
    queryRunner: QueryRunner,
    context: BeginContext,
  ): Promise<unknown> {
    const connecting: Promise<unknown> = queryRunner.connect();
    return new Promise<void>((resolve, reject) => {
      const deadline = this.acquireDeadlines.start(() => {
        // NOTE: the pool keeps the request; a connection it hands over later goes straight back.
        connecting.then(
          () => queryRunner.release(),
          () => undefined,
        );
        reject(
          new ConnectionAcquireTimeoutError(
            context.where,
            this.connectionName,
            this.acquireTimeoutMs,
            this.describePool(),
            context.insideTransaction,
          ),
        );
      });
      connecting.then(
        () => {
          deadline.cancel();
          resolve();
        },
        (error: unknown) => {
          deadline.cancel();
          reject(error);
        },
      );
    });
  }

  private describePool(): string {
    if (dialectOf(this.dataSource) === 'mysql') return this.describeMysqlPool();
    const driver = this.dataSource.driver as {
      master?: {
        totalCount?: number;
        idleCount?: number;
        waitingCount?: number;
        options?: { max?: number };
      };
    };
    const pool = driver.master;
    if (pool?.options?.max === undefined) return 'pool size unknown';
    const inUse = (pool.totalCount ?? 0) - (pool.idleCount ?? 0);
    return `pool size ${pool.options.max}, ${inUse} in use, ${pool.waitingCount ?? 0} waiting`;
  }

  /** The same for mysql2's pool (its counters are not public API: read defensively). */
  private describeMysqlPool(): string {
    const pool = (
      this.dataSource.driver as {
        pool?: {
          config?: { connectionLimit?: number };
          _allConnections?: { length: number };
          _freeConnections?: { length: number };
          _connectionQueue?: { length: number };
        };
      }
    ).pool;
    const max = pool?.config?.connectionLimit;
    if (max === undefined) return 'pool size unknown';
    const inUse =
      (pool?._allConnections?.length ?? 0) -
      (pool?._freeConnections?.length ?? 0);
    return `pool size ${max}, ${inUse} in use, ${pool?._connectionQueue?.length ?? 0} waiting`;
  }
}
