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
import { Account } from '../accounts/account.entity';
import { APP_CONFIG, AppConfig } from '../config/app-config';
import { assertSingleHeader } from '../http/single-header';
import { hashApiKey } from './api-key';
import {
  ADMIN_ROUTE,
  AuthenticatedRequest,
  PUBLIC_ROUTE,
} from './auth.decorators';

function bearer(request: AuthenticatedRequest): string {
  assertSingleHeader(request, 'Authorization');
  const header = request.headers.authorization;
  if (!header) {
    throw new UnauthorizedException(
      'Missing Authorization header: send "Authorization: Bearer <api key>"',
    );
  }
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) {
    throw new UnauthorizedException(
      'Malformed Authorization header: expected "Authorization: Bearer <api key>"',
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
 * Authenticates every route: by API key (the account is attached to the request), or by the
 * admin token on routes marked `@AdminRoute()`.
 */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly dataSource: DataSource,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (this.reflector.get<boolean>(PUBLIC_ROUTE, context.getHandler()))
      return true;
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const token = bearer(request);
    if (this.reflector.get<boolean>(ADMIN_ROUTE, context.getHandler())) {
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
    const account = await this.dataSource.getRepository(Account).findOne({
      where: { apiKeyHash: hashApiKey(token) },
      select: { id: true, name: true },
    });
    if (!account) throw new UnauthorizedException('Invalid API key');
    request.account = { id: account.id, name: account.name };
    return true;
  }
}
