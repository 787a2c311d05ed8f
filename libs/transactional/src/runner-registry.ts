import type { ModulesContainer } from '@nestjs/core';
import { TransactionalError } from './errors/transactional.error';
import { transactionStorage } from './transaction-storage';
import { TRANSACTIONAL_OPTIONS_METADATA } from './transactional.constants';

/** What `@Transactional` needs of a runner; the runner itself imports this file. */
export interface RunnerLike {
  run<T>(options: object, fn: () => Promise<T>, where?: string): Promise<T>;
}

const RUNNER = Symbol.for('transactional:runner');
/** Runners of applications that are initialised and not yet shut down. */
const live = new Set<RunnerLike>();
const decoratedClasses = new WeakMap<object, boolean>();

function hasDecoratedMethods(prototype: object | null): boolean {
  if (!prototype || prototype === Object.prototype) return false;
  let known = decoratedClasses.get(prototype);
  if (known === undefined) {
    known =
      Object.getOwnPropertyNames(prototype).some((key) => {
        const value = Object.getOwnPropertyDescriptor(prototype, key)?.value;
        return (
          typeof value === 'function' &&
          Reflect.hasMetadata(TRANSACTIONAL_OPTIONS_METADATA, value)
        );
      }) || hasDecoratedMethods(Object.getPrototypeOf(prototype));
    decoratedClasses.set(prototype, known);
  }
  return known;
}

/**
 * Which runner a `@Transactional` method uses. Every application has its own runner (its own
 * DataSources): its module binds the runner to each provider and controller instance that has
 * decorated methods, so two Nest applications in one process never use each other's database.
 * Internal.
 */
export const runnerRegistry = {
  /** Counts `runner` as live (its application is up). */
  add(runner: RunnerLike): void {
    live.add(runner);
  },

  /** Forgets `runner` (its application has shut down). */
  delete(runner: RunnerLike): void {
    live.delete(runner);
  },

  /** Binds `runner` to `instance` if its class has `@Transactional` methods. */
  bind(instance: unknown, runner: RunnerLike): void {
    if (
      typeof instance !== 'object' ||
      instance === null ||
      !Object.isExtensible(instance) ||
      !hasDecoratedMethods(Object.getPrototypeOf(instance))
    ) {
      return;
    }
    Object.defineProperty(instance, RUNNER, {
      value: runner,
      configurable: true,
      enumerable: false,
      writable: true,
    });
  },

  /** Binds `runner` to every provider and controller instance of one application. */
  bindApplication(modules: ModulesContainer, runner: RunnerLike): void {
    for (const module of modules.values()) {
      for (const wrapper of module.providers.values())
        this.bind(wrapper.instance, runner);
      for (const wrapper of module.controllers.values())
        this.bind(wrapper.instance, runner);
    }
  },

  /**
   * The runner for a decorated method called on `self`: the one bound to the instance; else
   * the one whose transaction is active on `connectionName`; else the only live one.
   */
  resolve(self: unknown, connectionName: string, where: string): RunnerLike {
    const bound = (self as { [RUNNER]?: RunnerLike } | undefined)?.[RUNNER];
    if (bound) return bound;
    const scope = transactionStorage.get(connectionName);
    if (scope) return scope.tx.owner as RunnerLike;
    if (live.size === 1) return live.values().next().value as RunnerLike;
    throw new TransactionalError(
      live.size === 0
        ? `${where} is decorated with @Transactional(), but no application with ` +
          `TransactionalModule is running. Import TransactionalModule.forRoot() in the ` +
          `application module and call the method after the application has started ` +
          `(app.init()) and before it is closed.`
        : `${where} is decorated with @Transactional(), but ${live.size} applications with ` +
          `TransactionalModule are running in this process and this instance belongs to ` +
          `none of them (it was not created by Nest, or is request-scoped). Get the instance ` +
          `from the application (app.get()), or call it inside a transaction scope of the ` +
          `application it should use.`,
    );
  },
};
