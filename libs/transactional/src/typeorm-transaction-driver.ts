import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
import type {
  TransactionDriver,
  TransactionHandle,
} from './transaction-driver';
import type { IsolationLevel } from './transactional.interfaces';

const SAVEPOINT_SQL = {
  create: 'SAVEPOINT',
  release: 'RELEASE SAVEPOINT',
  rollback: 'ROLLBACK TO SAVEPOINT',
} as const;

class QueryRunnerHandle implements TransactionHandle {
  constructor(private readonly queryRunner: QueryRunner) {}

  get manager(): EntityManager {
    return this.queryRunner.manager;
  }

  commit(): Promise<void> {
    return this.queryRunner.commitTransaction();
  }

  rollback(): Promise<void> {
    return this.queryRunner.rollbackTransaction();
  }

  async savepoint(action: keyof typeof SAVEPOINT_SQL, name: string) {
    await this.queryRunner.query(`${SAVEPOINT_SQL[action]} "${name}"`);
  }

  release(): Promise<void> {
    return this.queryRunner.release();
  }
}

/** `TransactionDriver` on a TypeORM DataSource: one pooled connection per transaction. */
export class TypeOrmTransactionDriver implements TransactionDriver {
  constructor(private readonly dataSource: DataSource) {}

  get manager(): EntityManager {
    return this.dataSource.manager;
  }

  async begin(isolationLevel?: IsolationLevel): Promise<TransactionHandle> {
    const queryRunner = this.dataSource.createQueryRunner();
    try {
      await queryRunner.startTransaction(isolationLevel);
    } catch (error) {
      await queryRunner.release().catch(() => undefined);
      throw error;
    }
    return new QueryRunnerHandle(queryRunner);
  }
}
