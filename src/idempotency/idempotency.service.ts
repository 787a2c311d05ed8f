import {
  CanActivate,
  ConflictException,
  ExecutionContext,
  Injectable,
  UnprocessableEntityException,
} from '@nestjs/common';
import { createHash } from 'crypto';
import type { Response } from 'express';
import { TransactionHost } from 'nestjs-transactional-jobs';
import type { AuthenticatedRequest } from '../auth/auth.decorators';
import { RawJson } from '../http/raw-json';
import { assertSingleHeader } from '../http/single-header';
import { SecretBox } from '../secrets/secret-box';
import { idempotencyContext } from './idempotency-context';

/** How long a key is remembered. */
export const IDEMPOTENCY_TTL_HOURS = 24;

const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

/** The request body exactly as received, when the body reader kept it. */
function bodyText(request: AuthenticatedRequest): string {
  const raw = (request as { rawBodyText?: string }).rawBodyText;
  return raw ?? JSON.stringify(request.body ?? null);
}

/**
 * The `Idempotency-Key` of a POST request, if it has one; a 422 for a key that is not 1 to 255
 * printable ASCII characters (or a 400 for two of them).
 */
export function idempotencyKeyOf(
  request: AuthenticatedRequest,
): string | undefined {
  const key = request.headers['idempotency-key'];
  if (request.method !== 'POST' || key === undefined) return undefined;
  assertSingleHeader(request, 'Idempotency-Key');
  if (typeof key !== 'string' || !KEY_PATTERN.test(key)) {
    throw new UnprocessableEntityException(
      'Idempotency-Key must be 1 to 255 printable ASCII characters',
    );
  }
  return key;
}

/**
 * Checks the request's `Idempotency-Key` (see `idempotencyKeyOf`) after the global guards and
 * before the pipes: a bad key is refused whatever the body holds.
 */
@Injectable()
export class IdempotencyKeyGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    idempotencyKeyOf(context.switchToHttp().getRequest<AuthenticatedRequest>());
    return true;
  }
}

/**
 * `Idempotency-Key` on POST requests: the first request with a key runs in a transaction
 * that also stores the key and, when it succeeds, its response; the same key with the same
 * body within 24 h returns that response and runs nothing; another body is a 422. Failed
 * requests roll the key back with everything else, so they can be retried with it.
 *
 * Responses can carry secrets (a new API key, an endpoint's signing secret), so the stored
 * response is sealed with `SecretBox` (AES-256-GCM) and a replay returns it, secret included,
 * exactly as first sent.
 */
@Injectable()
export class IdempotencyService {
  constructor(
    private readonly tx: TransactionHost,
    private readonly box: SecretBox,
  ) {}

  /**
   * Runs `handler` (a POST handler, see `@Idempotent()`) under the request's `Idempotency-Key`,
   * if it has one: in the transaction that claims the key and stores the answer, or not at all
   * when the key's answer is replayed.
   */
  run(
    request: AuthenticatedRequest,
    response: Response,
    handler: () => unknown,
  ): unknown {
    const key = idempotencyKeyOf(request);
    if (key === undefined) return handler();
    const owner = request.account?.id ?? 'admin';
    const hash = createHash('sha256')
      .update(`${request.method} ${request.originalUrl}\n${bodyText(request)}`)
      .digest('hex');
    return this.tx.withTransaction(async () => {
      const m = this.tx.manager;
      // Expired keys are forgotten first, so that the insert below can take the key again.
      await m.query(
        `DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2
           AND created_at < now() - make_interval(hours => $3)`,
        [owner, key, IDEMPOTENCY_TTL_HOURS],
      );
      // NOTE: a concurrent request with the same key blocks here until the first commits.
      const [inserted] = await m.query(
        `INSERT INTO idempotency_keys (account_id, key, request_hash) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING RETURNING key`,
        [owner, key, hash],
      );
      if (!inserted) return this.replay(owner, key, hash, response);
      const body = await handler();
      const sealed = this.box.seal(
        RawJson.textOf(body),
        idempotencyContext(owner, key),
      );
      await m.query(
        `UPDATE idempotency_keys SET response_status = $3, response_body = $4
         WHERE account_id = $1 AND key = $2`,
        [owner, key, response.statusCode, sealed],
      );
      return body;
    });
  }

  private async replay(
    owner: string,
    key: string,
    hash: string,
    response: Response,
  ): Promise<RawJson> {
    const [row] = await this.tx.manager.query(
      `SELECT request_hash, response_status, response_body FROM idempotency_keys
       WHERE account_id = $1 AND key = $2`,
      [owner, key],
    );
    if (!row || row.request_hash !== hash) {
      throw new UnprocessableEntityException(
        `Idempotency-Key "${key}" was already used with a different request within ` +
          `${IDEMPOTENCY_TTL_HOURS} h; use a new key for a new request`,
      );
    }
    if (row.response_status === null) {
      throw new ConflictException(
        `A request with Idempotency-Key "${key}" is still in progress`,
      );
    }
    const text = SecretBox.isSealed(row.response_body)
      ? this.box.open(row.response_body, idempotencyContext(owner, key))
      : (row.response_body as string);
    response.status(row.response_status);
    response.setHeader('Idempotent-Replayed', 'true');
    return new RawJson(text);
  }
}
