import { UseInterceptors, applyDecorators } from '@nestjs/common';
import { opensOwnScope } from './propagation';
import { RunnerLike, runnerRegistry } from './runner-registry';
import { handlerClaims } from './transaction-storage';
import {
  DEFAULT_CONNECTION_NAME,
  TRANSACTIONAL_OPTIONS_METADATA,
} from './transactional.constants';
import { TransactionalInterceptor } from './transactional.interceptor';
import type { TransactionalOptions } from './transactional.interfaces';

/** Calls `method`, turning what it returns or throws into a promise. */
function callAsync(
  method: (...args: unknown[]) => unknown,
  self: unknown,
  args: unknown[],
): Promise<unknown> {
  try {
    return Promise.resolve(method.apply(self, args));
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * Runs the decorated method in a transaction scope (see `Propagation`). It wraps the method,
 * so it works the same on controller route handlers and on any provider method (services,
 * Bull processors, cron jobs: no HTTP needed); the method then always returns a Promise.
 *
 * On a route handler the transaction opens when Nest calls the handler (after guards,
 * interceptors and pipes), commits when the handler's promise resolves and before the
 * response is written, and any error rolls it back and is rethrown to the exception filters.
 * Deferred jobs are enqueued after the commit and before the response. With
 * `{ useInterceptor: true }` the scope is opened by `TransactionalInterceptor` instead, so
 * pipes and the interceptors declared after it run inside the transaction too (at the cost of
 * Nest's interceptor pipeline on that route). A handler that returns an Observable needs the
 * interceptor: the wrapper ends the scope when the method returns.
 *
 * @example
 * ```ts
 * @Post(':id/delays')
 * @Transactional()
 * async delay(@Param('id') id: string) {
 *   await this.tx.getRepository(Trip).update(id, { status: 'delayed' });
 *   await this.queue.add({ tripId: id }); // reaches Redis after COMMIT
 * }
 * ```
 */
export function Transactional(
  options: TransactionalOptions = {},
): MethodDecorator {
  const frozen = Object.freeze({ ...options });
  return (target, key, descriptor: PropertyDescriptor) => {
    const original = descriptor.value;
    if (typeof original !== 'function') {
      throw new TypeError(
        `@Transactional() can only decorate methods, but ${String(key)} is not a method.`,
      );
    }
    const kind = (original as { constructor?: { name?: string } }).constructor
      ?.name;
    if (kind === 'GeneratorFunction' || kind === 'AsyncGeneratorFunction') {
      // NOTE: calling it only creates the generator; its body would run after the scope ended.
      throw new TypeError(
        `@Transactional() cannot decorate the generator method ${String(key)}: its body runs ` +
          `when the generator is consumed, after the scope has ended. Decorate the method that ` +
          `consumes the generator instead.`,
      );
    }
    // NOTE: on a static method `target` is the class itself.
    const owner =
      typeof target === 'function' ? target.name : target.constructor.name;
    const where = `${owner}.${String(key)}`;
    const guardOwnScope = opensOwnScope(frozen);
    const connection = frozen.connectionName ?? DEFAULT_CONNECTION_NAME;
    const wrapped = function (this: unknown, ...args: unknown[]) {
      if (guardOwnScope && handlerClaims.take(wrapped))
        return original.apply(this, args);
      let runner: RunnerLike;
      try {
        runner = runnerRegistry.resolve(this, connection, where);
      } catch (error) {
        return Promise.reject(error);
      }
      return runner.run(frozen, () => callAsync(original, this, args), where);
    };
    for (const metadataKey of Reflect.getMetadataKeys(original)) {
      Reflect.defineMetadata(
        metadataKey,
        Reflect.getMetadata(metadataKey, original),
        wrapped,
      );
    }
    Object.defineProperty(wrapped, 'name', { value: original.name });
    descriptor.value = wrapped;
    Reflect.defineMetadata(TRANSACTIONAL_OPTIONS_METADATA, frozen, wrapped);
    // NOTE: no interceptor by default. Any interceptor on a route puts it through Nest's
    // interceptor pipeline (rxjs, AsyncResource.bind per step): a measured 12-22% of the CPU
    // of a handler that inserts a row and enqueues a job (bench/README.md).
    if (frozen.useInterceptor) {
      applyDecorators(UseInterceptors(TransactionalInterceptor))(
        target,
        key,
        descriptor,
      );
    }
    return descriptor;
  };
}
