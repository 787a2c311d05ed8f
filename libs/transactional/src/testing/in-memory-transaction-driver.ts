import type { EntityManager } from 'typeorm';
import type {
  CommitOutcome,
  TransactionDriver,
  TransactionHandle,
} from '../transaction-driver';
import { DEFAULT_CONNECTION_NAME } from '../transactional.constants';
import type { IsolationLevel } from '../transactional.interfaces';
import { unavailable } from './unavailable';

const SAVEPOINT_SQL = {
  create: 'SAVEPOINT',
  release: 'RELEASE SAVEPOINT',
  rollback: 'ROLLBACK TO SAVEPOINT',
} as const;

class InMemoryTransactionHandle implements TransactionHandle {
  constructor(
    readonly manager: EntityManager,
    private readonly driver: InMemoryTransactionDriver,
  ) {}

  async commit(): Promise<CommitOutcome> {
    this.driver.statements.push('COMMIT');
    const failure = this.driver.takeCommitFailure();
    if (failure !== undefined) throw failure;
    return 'committed';
  }

  async rollback(): Promise<void> {
    this.driver.statements.push('ROLLBACK');
  }

  async savepoint(action: keyof typeof SAVEPOINT_SQL, name: string) {
    this.driver.statements.push(`${SAVEPOINT_SQL[action]} ${name}`);
  }

  async release(): Promise<void> {
    this.driver.openTransactions--;
  }
}

/**
 * A `TransactionDriver` without a database: it opens no connection and records the statements
 * the runner asks for (`BEGIN`, `SAVEPOINT tx_sp_1`, `COMMIT`, ...), so that the real
 * `TransactionRunner` can run `@Transactional` scopes in unit tests.
 * `TransactionalTestingModule` creates one per connection; it can also be used on its own:
 *
 * ```ts
 * const driver = new InMemoryTransactionDriver();
 * const runner = new TransactionRunner(new Map([['default', driver]]));
 * ```
 */
export class InMemoryTransactionDriver implements TransactionDriver {
  /** Statements run so far, in order, on all transactions of this connection. */
  readonly statements: string[] = [];
  /** Transactions begun and not yet released; `0` once every scope has ended. */
  openTransactions = 0;
  /** EntityManager of every transaction and of code outside transactions. */
  readonly manager: EntityManager;
  private readonly commitFailures: unknown[] = [];

  constructor(
    /** Connection name, used in the message of the stand-in EntityManager. */
    readonly connectionName: string = DEFAULT_CONNECTION_NAME,
    /** EntityManager to hand out. Default: one that throws, naming the option to set. */
    manager?: EntityManager,
  ) {
    this.manager = manager ?? missingManager(connectionName);
  }

  /** Records `BEGIN` (with the isolation level, if any) and returns the handle. */
  async begin(isolationLevel?: IsolationLevel): Promise<TransactionHandle> {
    this.statements.push(
      isolationLevel ? `BEGIN ISOLATION LEVEL ${isolationLevel}` : 'BEGIN',
    );
    this.openTransactions++;
    return new InMemoryTransactionHandle(this.manager, this);
  }

  /** Makes the next `COMMIT` reject with `error`, as a database refusing it would. */
  failNextCommit(error: unknown): void {
    this.commitFailures.push(error);
  }

  /** The error queued by `failNextCommit`, if any; it is consumed. Internal. */
  takeCommitFailure(): unknown {
    return this.commitFailures.shift();
  }
}

function missingManager(connectionName: string): EntityManager {
  return unavailable<EntityManager>(
    {},
    (property) =>
      `EntityManager.${property} was used on connection "${connectionName}", but ` +
      `TransactionalTestingModule has no database. Pass one with ` +
      `TransactionalTestingModule.forRoot({ entityManager }), or replace the code that reads ` +
      `and writes rows with a test double.`,
  );
}
