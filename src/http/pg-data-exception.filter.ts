import {
  ArgumentsHost,
  BadRequestException,
  Catch,
  Logger,
  ServiceUnavailableException,
} from '@nestjs/common';
import { BaseExceptionFilter } from '@nestjs/core';

/** What each Postgres data exception (SQLSTATE class 22) says about the request's value. */
const DATA_EXCEPTIONS: Record<string, string> = {
  '22007': 'a date or time is not in a form it can be read in',
  '22008': 'a date or time is out of range',
  '22009': 'a date or time has a time zone offset out of range',
  '22015': 'a time interval is out of range',
  '22P02': 'a value is not in the form its type takes',
  '22003': 'a number is out of range',
  '22001': 'a text is too long',
  '22021': 'a text holds characters that cannot be stored',
  '22P05': 'a text holds characters that cannot be stored',
  '22023': 'a value is outside its allowed domain',
};

/** Seconds a client is asked to wait before repeating a request that lost a lock race. */
export const TRANSIENT_RETRY_AFTER_S = 1;

/** The SQLSTATE a Postgres error carries, if the error is one. */
function sqlStateOf(error: unknown): string | undefined {
  if (error === null || typeof error !== 'object') return undefined;
  // NOTE: TypeORM wraps the driver's error (QueryFailedError.driverError); pg's is bare.
  const { code, driverError } = error as {
    code?: unknown;
    driverError?: { code?: unknown };
  };
  const sqlState = typeof code === 'string' ? code : driverError?.code;
  return typeof sqlState === 'string' && /^[0-9A-Z]{5}$/.test(sqlState)
    ? sqlState
    : undefined;
}

/** The SQLSTATE of a Postgres data exception (class 22), if the error is one. */
export function dataExceptionCode(error: unknown): string | undefined {
  const sqlState = sqlStateOf(error);
  return sqlState?.startsWith('22') ? sqlState : undefined;
}

/**
 * The SQLSTATE of a transaction Postgres rolled back because it lost a race with another
 * (40P01 deadlock detected, 40001 serialization failure), if the error is one: repeating the
 * request is expected to succeed.
 */
export function transientConflictCode(error: unknown): string | undefined {
  const sqlState = sqlStateOf(error);
  return sqlState === '40P01' || sqlState === '40001' ? sqlState : undefined;
}

/**
 * Safety net for values that passed validation but that Postgres refuses (a date it cannot
 * read, a number out of range, a text too long, ...): SQLSTATE class 22 comes from the data
 * a statement was given, so it is the request's fault and answers a JSON 400, not a 500.
 * The answer says what kind of value is wrong, never the SQL or the database's message; the
 * detail goes to the log.
 *
 * Likewise a transaction Postgres rolled back because it lost a race with another (deadlock,
 * serialization failure) is nobody's fault and answers a JSON 503 with `Retry-After`: nothing
 * of it was committed and the same request can be sent again. Every other error is left to
 * Nest's default handling.
 */
@Catch()
export class PgDataExceptionFilter extends BaseExceptionFilter {
  private readonly logger = new Logger('PgDataException');

  catch(exception: unknown, host: ArgumentsHost): void {
    const transient = transientConflictCode(exception);
    if (transient !== undefined && host.getType() === 'http') {
      const http = host.switchToHttp();
      const { method, originalUrl } = http.getRequest<{
        method?: string;
        originalUrl?: string;
      }>();
      this.logger.warn(
        `${method} ${originalUrl?.split('?')[0]}: transaction rolled back ` +
          `(SQLSTATE ${transient}); answered 503 to be retried`,
      );
      const response = http.getResponse<{
        headersSent?: boolean;
        setHeader?: (name: string, value: string) => void;
      }>();
      if (!response.headersSent) {
        response.setHeader?.('Retry-After', String(TRANSIENT_RETRY_AFTER_S));
      }
      super.catch(
        new ServiceUnavailableException(
          'the request conflicted with concurrent changes and was not applied; send it again',
        ),
        host,
      );
      return;
    }
    const code = dataExceptionCode(exception);
    if (code === undefined || host.getType() !== 'http') {
      super.catch(exception, host);
      return;
    }
    const { method, originalUrl } = host
      .switchToHttp()
      .getRequest<{ method?: string; originalUrl?: string }>();
    this.logger.warn(
      `${method} ${originalUrl?.split('?')[0]}: Postgres refused a value ` +
        `(SQLSTATE ${code}): ${String((exception as Error).message).slice(0, 300)}`,
    );
    super.catch(
      new BadRequestException(
        `a value in the request is not valid: ${DATA_EXCEPTIONS[code] ?? 'a value is not valid for its type'}`,
      ),
      host,
    );
  }
}
