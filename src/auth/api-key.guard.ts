import {
  CanActivate,
  ExecutionContext,
  ForbiddenException,
  Inject,
  Injectable,
  UnauthorizedException,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { timingSafeEqual } from 'crypto';
import { DataSource } from 'typeorm';
import { APP_CONFIG, AppConfig } from '../config/app-config';
import { assertSingleHeader } from '../http/single-header';
import { hashApiKey } from './api-key';
import {
  ADMIN_ROUTE,
  AuthenticatedAccount,
  AuthenticatedRequest,
  PUBLIC_ROUTE,
} from './auth.decorators';

function bearer(request: AuthenticatedRequest, what = 'api key'): string {
  assertSingleHeader(request, 'Authorization');
  const header = request.headers.authorization;
  if (!header) {
    throw new UnauthorizedException(
      `Missing Authorization header: send "Authorization: Bearer <${what}>"`,
    );
  }
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) {
    throw new UnauthorizedException(
      `Malformed Authorization header: expected "Authorization: Bearer <${what}>"`,
    );
  }
  return match[1];
}

function sameSecret(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

/**
 * How long an API key's account is taken from the process's cache rather than Postgres (ms):
 * keys never change once issued, and an account removed by hand stops authenticating within
 * this time.
 */
export const ACCOUNT_CACHE_TTL_MS = 10_000;

/** Cached keys per process; the cache is emptied when it is full. */
const ACCOUNT_CACHE_MAX = 10_000;

/**
 * Authenticates every route: by API key (the account is attached to the request), or by the
 * admin token on routes marked `@AdminRoute()`.
 */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  /** Accounts by API key hash, with when they were read. */
  private readonly accounts = new Map<
    string,
    { account: AuthenticatedAccount; at: number }
  >();

  constructor(
    private readonly reflector: Reflector,
    private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (this.reflector.get<boolean>(PUBLIC_ROUTE, context.getHandler()))
      return true;
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const adminRoute = this.reflector.get<boolean>(
      ADMIN_ROUTE,
      context.getHandler(),
    );
    const token = bearer(request, adminRoute ? 'ADMIN_TOKEN' : 'api key');
    if (adminRoute) {
      if (!this.config.adminToken) {
        throw new ForbiddenException(
          'Admin routes (account creation, metrics) are disabled: the server has no ' +
            'ADMIN_TOKEN set',
        );
      }
      if (!sameSecret(token, this.config.adminToken)) {
        throw new UnauthorizedException('Invalid admin token');
      }
      return true;
    }
    const account = await this.accountOf(hashApiKey(token));
    if (!account) throw new UnauthorizedException('Invalid API key');
    request.account = account;
    return true;
  }

  /**
   * The account of a key hash: from the cache while it is younger than
   * {@link ACCOUNT_CACHE_TTL_MS}, else one query by the unique index. Unknown keys are never
   * cached (each one costs its lookup, as before).
   */
  private async accountOf(
    hash: string,
  ): Promise<AuthenticatedAccount | undefined> {
    const cached = this.accounts.get(hash);
    if (cached && Date.now() - cached.at < ACCOUNT_CACHE_TTL_MS)
      return cached.account;
    const [row]: AuthenticatedAccount[] = await this.dataSource.query(
      'SELECT id, name FROM accounts WHERE api_key_hash = $1',
      [hash],
    );
    if (!row) {
      this.accounts.delete(hash);
      return undefined;
    }
    const account = { id: row.id, name: row.name };
    if (this.accounts.size >= ACCOUNT_CACHE_MAX) this.accounts.clear();
    this.accounts.set(hash, { account, at: Date.now() });
    return account;
  }
}
