import { Inject, Req, Res, UseGuards } from '@nestjs/common';
import { ROUTE_ARGS_METADATA } from '@nestjs/common/constants';
import type { Response } from 'express';
import type { AuthenticatedRequest } from '../auth/auth.decorators';
import { IdempotencyKeyGuard, IdempotencyService } from './idempotency.service';

/** Marks a handler wrapped by `@Idempotent()` (read by the test that every POST route is). */
export const IDEMPOTENT_METADATA = 'webhooks:idempotent';

/** The controller property the `IdempotencyService` is injected into. */
const SERVICE = '__idempotency';

/**
 * Makes a POST handler honour `Idempotency-Key` (see `IdempotencyService`): every POST route
 * carries it (a test checks). It wraps the handler itself, like the library's
 * `@Transactional()`, rather than being a global interceptor: any interceptor puts each request
 * of a route through Nest's rxjs pipeline, which cost about 5 % of the API's CPU on the delay
 * request, with or without a key (bench/README.md, "The API path: what the two global
 * interceptors cost, and both gone").
 *
 * The handler gets the request and response as two extra arguments after its own (Nest fills
 * them; `Res` in passthrough mode, so Nest still writes the result), which the wrapper takes off
 * before calling it. A malformed key is refused by a route guard before the pipes run (422);
 * the key is claimed once the body has passed validation.
 */
export function Idempotent(): MethodDecorator {
  return (target, key, descriptor: PropertyDescriptor) => {
    const original = descriptor.value as (...args: unknown[]) => unknown;
    const routeArgs: Record<string, { index: number }> =
      Reflect.getMetadata(ROUTE_ARGS_METADATA, target.constructor, key) ?? {};
    const declared: unknown[] =
      Reflect.getMetadata('design:paramtypes', target, key) ?? [];
    const own = Math.max(
      declared.length,
      original.length,
      ...Object.values(routeArgs).map((arg) => arg.index + 1),
    );
    Req()(target, key, own);
    Res({ passthrough: true })(target, key, own + 1);
    Inject(IdempotencyService)(target, SERVICE);
    const wrapped = function (
      this: { [SERVICE]: IdempotencyService },
      ...args: unknown[]
    ) {
      const request = args[own] as AuthenticatedRequest;
      const response = args[own + 1] as Response;
      return this[SERVICE].run(request, response, () =>
        original.apply(this, args.slice(0, own)),
      );
    };
    for (const metadataKey of Reflect.getMetadataKeys(original)) {
      Reflect.defineMetadata(
        metadataKey,
        Reflect.getMetadata(metadataKey, original),
        wrapped,
      );
    }
    Object.defineProperty(wrapped, 'name', { value: original.name });
    Reflect.defineMetadata(IDEMPOTENT_METADATA, true, wrapped);
    descriptor.value = wrapped;
    // NOTE: a route guard runs after the global ones and before the pipes, where the
    // interceptor used to check the key.
    UseGuards(IdempotencyKeyGuard)(target, key, descriptor);
    return descriptor;
  };
}
