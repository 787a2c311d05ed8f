import { runInThisContext } from 'vm';

/** What reached the process-level handlers while a watch was on. */
export interface ProcessFailures {
  readonly unhandledRejections: unknown[];
  readonly uncaughtExceptions: unknown[];
  /** Removes the listeners. */
  dispose(): void;
}

/**
 * Listens for `unhandledRejection` and `uncaughtException` on the real Node process.
 *
 * NOTE: the `process` global of a Jest test file is a copy with its own listener list, which
 * Node never emits on; `runInThisContext` evaluates in the main context, where `process` is the
 * real one. (Jest also fails the running test on either event; these listeners let a spec say
 * so explicitly, and see events outside a test body too.)
 */
export function watchProcessFailures(): ProcessFailures {
  const realProcess = runInThisContext('process') as NodeJS.Process;
  const unhandledRejections: unknown[] = [];
  const uncaughtExceptions: unknown[] = [];
  const onRejection = (reason: unknown) => unhandledRejections.push(reason);
  const onException = (error: unknown) => uncaughtExceptions.push(error);
  realProcess.on('unhandledRejection', onRejection);
  realProcess.on('uncaughtException', onException);
  return {
    unhandledRejections,
    uncaughtExceptions,
    dispose() {
      realProcess.off('unhandledRejection', onRejection);
      realProcess.off('uncaughtException', onException);
    },
  };
}

/** Resolves after the current macrotask, by when Node has reported unhandled rejections. */
export function nextMacrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
