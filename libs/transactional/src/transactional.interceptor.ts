import {
  CallHandler,
  ExecutionContext,
  Injectable,
  NestInterceptor,
} from '@nestjs/common';
import { SSE_METADATA } from '@nestjs/common/constants';
import { Observable, lastValueFrom } from 'rxjs';
import { TransactionalError } from './errors/transactional.error';
import { opensOwnScope } from './propagation';
import { TransactionRunner } from './transaction-runner';
import { handlerClaims } from './transaction-storage';
import { TRANSACTIONAL_OPTIONS_METADATA } from './transactional.constants';
import type { TransactionalOptions } from './transactional.interfaces';

/** What the interceptor needs of one decorated handler, read once per handler. */
interface HandlerScope {
  options: TransactionalOptions;
  /** `Class.method`, for error messages. */
  where: string;
  /** Whether the scope is one of the handler's own (REQUIRES_NEW, NESTED): see `handlerClaims`. */
  claim: boolean;
  /** The controller class `where` names (an inherited handler serves several). */
  owner: object;
}

/**
 * Wraps a route handler decorated with `@Transactional()` in its transaction scope: the scope
 * is entered before the handler (and its pipes) run and ends (commit, then deferred work)
 * before the handler's value reaches the response. Applied by the decorator itself.
 */
@Injectable()
export class TransactionalInterceptor implements NestInterceptor {
  /** Per handler: its scope, or `null` when it is not decorated. */
  private readonly handlers = new WeakMap<object, HandlerScope | null>();

  constructor(private readonly runner: TransactionRunner) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const handler = context.getHandler();
    let scope = this.handlers.get(handler);
    if (scope === undefined || (scope && scope.owner !== context.getClass())) {
      scope = this.scopeOf(context, handler);
      this.handlers.set(handler, scope);
    }
    if (!scope) return next.handle();
    const { claim, where, options } = scope;
    // NOTE: not from(promise): an outer interceptor that unsubscribes (rxjs timeout(), a
    // cache, a race) has already answered the client, with an error most of the time; the
    // transaction must then roll back rather than commit behind that answer.
    return new Observable<unknown>((subscriber) => {
      let abandoned = false;
      this.runner
        .run(
          options,
          async () => {
            if (claim) handlerClaims.claim(handler);
            // NOTE: Nest binds the handler's async context when handle() is called, so the
            // handler runs inside the scope entered here.
            const value = await lastValueFrom(next.handle(), {
              defaultValue: undefined,
            });
            if (abandoned) {
              throw new TransactionalError(
                `${where}: the response no longer waits for this transaction (an interceptor ` +
                  `outside TransactionalInterceptor unsubscribed, e.g. an rxjs timeout()), so ` +
                  `it was rolled back instead of committed.`,
              );
            }
            return value;
          },
          where,
        )
        .then(
          (value) => {
            subscriber.next(value);
            subscriber.complete();
          },
          (error: unknown) => subscriber.error(error),
        );
      return () => {
        abandoned = true;
      };
    });
  }

  private scopeOf(
    context: ExecutionContext,
    handler: object,
  ): HandlerScope | null {
    const options: TransactionalOptions | undefined = Reflect.getMetadata(
      TRANSACTIONAL_OPTIONS_METADATA,
      handler,
    );
    if (!options) return null;
    if (Reflect.getMetadata(SSE_METADATA, handler)) {
      // NOTE: an SSE response's status and headers go out before the stream's first event,
      // so before any commit, and lastValueFrom() would keep only the stream's last event.
      throw new TransactionalError(
        `${context.getClass().name}.${(handler as { name: string }).name}: ` +
          `@Transactional({ useInterceptor: true }) cannot wrap an @Sse() route: its 200 and ` +
          `headers are sent before the transaction commits. Run each event's work in its own ` +
          `@Transactional provider method instead.`,
      );
    }
    return {
      options,
      where: `${context.getClass().name}.${(handler as { name: string }).name}`,
      claim: opensOwnScope(options),
      owner: context.getClass(),
    };
  }
}
