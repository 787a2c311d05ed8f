import type { QueryRunner } from 'typeorm';
import { TransactionAbortedError } from '../errors/transaction-aborted.error';

/** `SERVER_STATUS_IN_TRANS` of the MySQL protocol's OK packet: a transaction is open. */
const IN_TRANS = 0x0001;
/** Statements that answer with rows and never end a transaction. */
const ROW_QUERY =
  /^[\s(]*(?:select|with|show|explain|describe|desc|values|table|do)\b/i;

/** The part of mysql2's connection the guard uses. */
interface MysqlConnection {
  query(
    sql: string,
    callback: (error: Error | null, result?: unknown) => void,
  ): unknown;
}

/** Why a transaction is no longer open. */
export interface LostTransaction {
  /** Rolled back by the database, or ended (committed implicitly) by one of its statements. */
  readonly outcome: 'rolled-back' | 'ended';
  readonly reason: string;
}

/**
 * Keeps a MySQL/MariaDB transaction honest. Unlike Postgres, which refuses every statement of a
 * transaction after an error until ROLLBACK, MySQL rolls back the WHOLE transaction on some
 * errors (deadlock 1213; lock wait timeout 1205 with `innodb_rollback_on_timeout`; a lost
 * connection) and on the next statement goes on in autocommit mode: work the caller sends after
 * catching the error would be committed piece by piece, and COMMIT would "succeed". DDL commits
 * implicitly and does the same.
 *
 * The guard sends the transaction's statements one at a time (the connection runs them one at
 * a time anyway), reads the OK packet's `SERVER_STATUS_IN_TRANS` flag after each statement that
 * has one, and after each failed statement asks the server (`DO 0`, one round trip, errors
 * only) whether the transaction is still open, before the caller sees the error and before the
 * next statement goes. Once the transaction is gone every further statement is refused with a
 * `TransactionAbortedError`, and the handle reports the transaction rolled back.
 */
export class MysqlTransactionGuard {
  /** Set once the transaction is no longer open. */
  lost?: LostTransaction;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly queryRunner: QueryRunner,
    private readonly connectionName: string,
  ) {}

  /** Resolves once every statement sent so far has settled (and its check is done). */
  settled(): Promise<void> {
    return this.tail.then(() => undefined);
  }

  /**
   * Runs `statement` after every earlier one has settled. `internal` statements (COMMIT,
   * ROLLBACK and savepoints of the runner) are not refused and do not count as ending it.
   */
  run<T>(statement: () => Promise<T>, sql: unknown, internal: boolean) {
    const result = this.tail.then(() => this.execute(statement, sql, internal));
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** The error for `what` once the transaction is lost. */
  refusal(what: string): TransactionAbortedError {
    const lost = this.lost!;
    return new TransactionAbortedError(
      what,
      this.connectionName,
      lost.reason,
      lost.outcome,
    );
  }

  private async execute<T>(
    statement: () => Promise<T>,
    sql: unknown,
    internal: boolean,
  ): Promise<T> {
    if (this.lost && !internal) throw this.refusal('A statement');
    let value: T;
    try {
      value = await statement();
    } catch (error) {
      if (!this.lost && !internal) await this.recheck(error);
      throw error;
    }
    let status = serverStatus(value);
    // NOTE: a statement that answers with rows carries no status mysql2 hands over, and some
    // of them commit implicitly (ANALYZE/CHECK/OPTIMIZE/REPAIR TABLE, a CALL or EXECUTE that
    // commits): unless it is a plain query, ask the server, as after an error.
    if (
      !internal &&
      !this.lost &&
      status === undefined &&
      !ROW_QUERY.test(String(sql))
    ) {
      try {
        status = serverStatus(await this.ping());
      } catch {
        status = undefined;
      }
    }
    if (
      !internal &&
      !this.lost &&
      status !== undefined &&
      !(status & IN_TRANS)
    ) {
      this.lost = {
        outcome: 'ended',
        reason: `"${describe(sql)}" ended it`,
      };
    }
    return value;
  }

  /** After a failed statement: is the transaction still open? */
  private async recheck(error: unknown): Promise<void> {
    const cause = errorCause(error);
    try {
      const status = serverStatus(await this.ping());
      if (status !== undefined && !(status & IN_TRANS)) {
        this.lost = { outcome: 'rolled-back', reason: cause };
      }
    } catch (pingError) {
      this.lost = {
        outcome: 'rolled-back',
        reason: `${cause}; then the connection failed: ${errorCause(pingError)}`,
      };
    }
  }

  private ping(): Promise<unknown> {
    const connection = (
      this.queryRunner as unknown as { databaseConnection?: MysqlConnection }
    ).databaseConnection;
    if (!connection) return Promise.reject(new Error('no connection'));
    return new Promise((resolve, reject) =>
      connection.query('DO 0', (error, result) =>
        error ? reject(error) : resolve(result),
      ),
    );
  }
}

/** The server status flags of an OK packet (TypeORM's raw or structured result), if any. */
function serverStatus(value: unknown): number | undefined {
  const raw = (value as { raw?: unknown } | undefined)?.raw ?? value;
  const status = (raw as { serverStatus?: unknown } | undefined)?.serverStatus;
  return typeof status === 'number' ? status : undefined;
}

/** `code errno: message` of a driver error (TypeORM wraps it in a QueryFailedError). */
function errorCause(error: unknown): string {
  const e = (error as { driverError?: unknown })?.driverError ?? error;
  const { code, errno, message } = (e ?? {}) as {
    code?: string;
    errno?: number;
    message?: string;
  };
  const head = [code, errno].filter((part) => part !== undefined).join(' ');
  return head ? `${head}: ${message ?? String(e)}` : (message ?? String(e));
}

function describe(sql: unknown): string {
  const text = String(sql).replace(/\s+/g, ' ').trim();
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
