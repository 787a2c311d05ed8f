import {
  CallHandler,
  ExecutionContext,
  Injectable,
  NestInterceptor,
} from '@nestjs/common';
import { Observable, from, lastValueFrom } from 'rxjs';
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
    const { claim } = scope;
    return from(
      this.runner.run(
        scope.options,
        () => {
          if (claim) handlerClaims.claim(handler);
          // NOTE: Nest binds the handler's async context when handle() is called, so the
          // handler runs inside the scope entered here.
          return lastValueFrom(next.handle(), { defaultValue: undefined });
        },
        scope.where,
      ),
    );
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
    return {
      options,
      where: `${context.getClass().name}.${(handler as { name: string }).name}`,
      claim: opensOwnScope(options),
      owner: context.getClass(),
    };
  }
}
