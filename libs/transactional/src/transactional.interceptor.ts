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

/**
 * Wraps a route handler decorated with `@Transactional()` in its transaction scope: the scope
 * is entered before the handler (and its pipes) run and ends (commit, then deferred work)
 * before the handler's value reaches the response. Applied by the decorator itself.
 */
@Injectable()
export class TransactionalInterceptor implements NestInterceptor {
  constructor(private readonly runner: TransactionRunner) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const handler = context.getHandler();
    const options: TransactionalOptions | undefined = Reflect.getMetadata(
      TRANSACTIONAL_OPTIONS_METADATA,
      handler,
    );
    if (!options) return next.handle();
    const where = `${context.getClass().name}.${handler.name}`;
    const claim = opensOwnScope(options);
    return from(
      this.runner.run(
        options,
        () => {
          if (claim) handlerClaims.claim(handler);
          // NOTE: Nest binds the handler's async context when handle() is called, so the
          // handler runs inside the scope entered here.
          return lastValueFrom(next.handle(), { defaultValue: undefined });
        },
        where,
      ),
    );
  }
}
