import { TransactionalError } from './transactional.error';

/**
 * Thrown when a scope that opens a transaction waited longer than `acquireTimeoutMs` for a
 * connection of the pool. The usual cause is REQUIRES_NEW (or a second DataSource call) inside an
 * open transaction: each caller holds one connection and waits for a second, so with as many
 * concurrent callers as the pool has connections nobody ever gets one.
 */
export class ConnectionAcquireTimeoutError extends TransactionalError {
  constructor(
    where: string,
    connectionName: string,
    timeoutMs: number,
    pool: string,
    insideTransaction: boolean,
  ) {
    super(
      `${where}: no connection of DataSource "${connectionName}" became free within ` +
        `${timeoutMs} ms (${pool}).` +
        (insideTransaction
          ? ` This scope opens a second transaction while its caller holds one open on the ` +
            `same pool (REQUIRES_NEW inside a transaction): with as many concurrent callers ` +
            `as the pool has connections, every caller waits for a connection that only ` +
            `another caller can free.`
          : '') +
        ` Raise the pool size (TypeORM \`extra: { max }\`) above the number of concurrent ` +
        `transactions, avoid REQUIRES_NEW inside transactions, or raise acquireTimeoutMs.`,
    );
  }
}
