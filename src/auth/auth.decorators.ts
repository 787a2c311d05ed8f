import {
  ExecutionContext,
  SetMetadata,
  createParamDecorator,
} from '@nestjs/common';
import type { Request } from 'express';

/** Metadata key of routes authenticated with the admin token instead of an API key. */
export const ADMIN_ROUTE = 'auth:admin-route';

/** Metadata key of routes that need no authentication. */
export const PUBLIC_ROUTE = 'auth:public-route';

/** Marks a route anyone may call (health checks). */
export const PublicRoute = () => SetMetadata(PUBLIC_ROUTE, true);

/** Marks a route that needs `Authorization: Bearer <ADMIN_TOKEN>` rather than an API key. */
export const AdminRoute = () => SetMetadata(ADMIN_ROUTE, true);

/** The authenticated account of the request, as the API key guard put it there. */
export interface AuthenticatedAccount {
  id: string;
  name: string;
}

/** A request that passed the API key guard. */
export type AuthenticatedRequest = Request & { account?: AuthenticatedAccount };

/** Injects the id of the caller's account into a handler parameter. */
export const AccountId = createParamDecorator(
  (_: unknown, ctx: ExecutionContext) => {
    const account = ctx
      .switchToHttp()
      .getRequest<AuthenticatedRequest>().account;
    if (!account)
      throw new Error(
        'AccountId used on a route the API key guard does not protect',
      );
    return account.id;
  },
);
