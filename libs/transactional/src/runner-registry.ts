import type { ModulesContainer } from '@nestjs/core';
import { TransactionalError } from './errors/transactional.error';
import { transactionStorage } from './transaction-storage';
import { TRANSACTIONAL_OPTIONS_METADATA } from './transactional.constants';

/** What `@Transactional` needs of a runner; the runner itself imports this file. */
export interface RunnerLike {
  run<T>(options: object, fn: () => Promise<T>, where?: string): Promise<T>;
}

const RUNNER = Symbol.for('transactional:runner');
/** Bound to an instance that several applications provide: no runner of its own. */
const SHARED: RunnerLike = {
  run: () => Promise.reject(new Error('shared instance')),
};
/** Runners of applications that are initialised and not yet shut down. */
const live = new Set<RunnerLike>();
/** The runners of the applications that declare each class (request-scoped, transient too). */
const classRunners = new WeakMap<object, Set<RunnerLike>>();
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

  /**
   * Binds `runner` to `instance` if its class has `@Transactional` methods. An instance that
   * another live application bound already is shared: it gets no runner of its own.
   */
  bind(instance: unknown, runner: RunnerLike): void {
    if (
      typeof instance !== 'object' ||
      instance === null ||
      !Object.isExtensible(instance) ||
      !hasDecoratedMethods(Object.getPrototypeOf(instance))
    ) {
      return;
    }
    const bound = (instance as { [RUNNER]?: RunnerLike })[RUNNER];
    const shared = bound !== undefined && bound !== runner && live.has(bound);
    Object.defineProperty(instance, RUNNER, {
      value: shared || bound === SHARED ? SHARED : runner,
      configurable: true,
      enumerable: false,
      writable: true,
    });
  },

  /** Binds `runner` to every provider and controller instance of one application. */
  bindApplication(modules: ModulesContainer, runner: RunnerLike): void {
    for (const module of modules.values()) {
      for (const wrappers of [module.providers, module.controllers]) {
        for (const wrapper of wrappers.values()) {
          this.bind(wrapper.instance, runner);
          // NOTE: request-scoped and transient instances are created later: known by class.
          const type = wrapper.metatype as { prototype?: object } | null;
          if (type?.prototype && hasDecoratedMethods(type.prototype)) {
            const runners = classRunners.get(type) ?? new Set<RunnerLike>();
            runners.add(runner);
            classRunners.set(type, runners);
          }
        }
      }
    }
  },

  /**
   * The runner for a decorated method called on `self`: the one bound to the instance; else
   * (a shared or unbound instance) the one whose transaction is active on `connectionName`;
   * else the only live application declaring the instance's class; else the only live one.
   */
  resolve(self: unknown, connectionName: string, where: string): RunnerLike {
    const bound = (self as { [RUNNER]?: RunnerLike } | undefined)?.[RUNNER];
    if (bound && bound !== SHARED) return bound;
    const scope = transactionStorage.get(connectionName);
    if (scope) return scope.tx.owner as RunnerLike;
    const ofClass = [
      ...(classRunners.get(
        (self as object | undefined)?.constructor as object,
      ) ?? []),
    ].filter((runner) => live.has(runner));
    if (ofClass.length === 1) return ofClass[0];
    if (live.size === 1) return live.values().next().value as RunnerLike;
    throw new TransactionalError(
      live.size === 0
        ? `${where} is decorated with @Transactional(), but no application with ` +
          `TransactionalModule is running. Import TransactionalModule.forRoot() in the ` +
          `application module and call the method after the application has started ` +
          `(app.init()) and before it is closed.`
        : `${where} is decorated with @Transactional(), but ${live.size} applications with ` +
          `TransactionalModule are running in this process and this instance cannot be told ` +
          `apart (${bound === SHARED ? 'several of them provide it' : 'it was not created by one of them, or its class is request-scoped or transient in several'}). ` +
          `Call it inside a transaction scope of the application it should use, or give ` +
          `each application an instance of its own.`,
    );
  },
};
