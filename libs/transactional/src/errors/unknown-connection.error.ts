import { TransactionalError } from './transactional.error';

/** Thrown when a scope names a connection for which no TypeORM DataSource is registered. */
export class UnknownConnectionError extends TransactionalError {
  constructor(connectionName: string, where: string) {
    super(
      `${where} uses connection "${connectionName}", but no TypeORM DataSource with that name ` +
        `is registered. Register it with TypeOrmModule.forRoot({ name: '${connectionName}', ... }) ` +
        `and list it in TransactionalModule.forRoot({ connectionNames }).`,
    );
  }
}
