import { ExecutionContext, Injectable } from '@nestjs/common';
import { ThrottlerGuard } from '@nestjs/throttler';
import type { AuthenticatedRequest } from '../auth/auth.decorators';

/**
 * @nestjs/throttler's guard, counting per account (the API key the request authenticated
 * with) over all its routes, rather than per IP address and route. Runs after `ApiKeyGuard`;
 * public and admin routes (no account) are not limited.
 */
@Injectable()
export class AccountThrottlerGuard extends ThrottlerGuard {
  protected override async shouldSkip(
    context: ExecutionContext,
  ): Promise<boolean> {
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    return !request.account;
  }

  protected override async getTracker(
    request: Record<string, unknown>,
  ): Promise<string> {
    return (request as unknown as AuthenticatedRequest).account!.id;
  }

  protected override generateKey(
    _context: ExecutionContext,
    tracker: string,
    name: string,
  ): string {
    return `${name}:account:${tracker}`;
  }
}
