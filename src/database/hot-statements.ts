import {
  Inject,
  Injectable,
  Logger,
  OnApplicationShutdown,
} from '@nestjs/common';
import { DataSource } from 'typeorm';
import { APP_CONFIG, AppConfig } from '../config/app-config';
import {
  GenericPlanPool,
  PreparedStatement,
  StatementRunner,
  unpreparedRunner,
} from './prepared-query';

/**
 * Connections of the {@link GenericPlanPool}: the worker's claim and 2xx-outcome batchers run at
 * most two statements each at once.
 */
export const HOT_STATEMENT_CONNECTIONS = 4;

/**
 * Where the worker runs its hottest statements, each a transaction of its own: a
 * {@link GenericPlanPool} (connected on first use, so an API-only process opens none), or
 * TypeORM's pool, unprepared, with `DATABASE_PREPARED_STATEMENTS=off`. Closed with the app.
 */
@Injectable()
export class HotStatements implements StatementRunner, OnApplicationShutdown {
  private readonly logger = new Logger(HotStatements.name);
  private readonly pool?: GenericPlanPool;
  private readonly runner: StatementRunner;

  constructor(@Inject(APP_CONFIG) config: AppConfig, dataSource: DataSource) {
    if (config.preparedStatements) {
      this.pool = new GenericPlanPool(
        config.databaseUrl,
        HOT_STATEMENT_CONNECTIONS,
        (error) =>
          this.logger.warn(`an idle connection failed: ${error.message}`),
      );
      this.runner = this.pool;
    } else {
      this.runner = unpreparedRunner(dataSource.manager);
    }
  }

  run<T>(statement: PreparedStatement, params: unknown[]): Promise<T[]> {
    return this.runner.run<T>(statement, params);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.pool?.close();
  }
}
