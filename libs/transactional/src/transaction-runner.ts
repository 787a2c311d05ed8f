import { Logger } from '@nestjs/common';
import { Propagation } from './propagation';
import { TransactionNotAllowedError } from './errors/transaction-not-allowed.error';
import { TransactionRequiredError } from './errors/transaction-required.error';
import { TransactionalError } from './errors/transactional.error';
import { UnknownConnectionError } from './errors/unknown-connection.error';
import {
  HookFrame,
  TransactionContext,
  TransactionHook,
  TransactionScope,
} from './transaction-context';
import type { TransactionDriver } from './transaction-driver';
import { transactionStorage } from './transaction-storage';
import { withTimeout } from './with-timeout';
import { DEFAULT_CONNECTION_NAME } from './transactional.constants';
import type { TransactionalOptions } from './transactional.interfaces';

/** Counters of a runner, for health checks and metrics. */
export interface TransactionRunnerStats {
  /** Transactions committed (savepoints not counted). */
  committed: number;
  /** Transactions rolled back, including failed commits. */
  rolledBack: number;
  /** After-commit and after-rollback steps that threw or timed out. */
  hookFailures: number;
}

let currentRunner: TransactionRunner | undefined;

// NOTE: a fail point for process-level fault tests only: with TRANSACTIONAL_FAILPOINT set to
// 'after-commit' the process kills itself between a commit that has after-commit work (queued
// jobs, hooks) and that work: the window durable mode closes. Read once, so the hot path pays one comparison.
const FAILPOINT = process.env.TRANSACTIONAL_FAILPOINT;

/**
 * Opens, joins, suspends and ends transaction scopes with the propagation rules of
 * `Propagation`, and runs the deferred work of a transaction after its outermost commit.
 * `@Transactional`, its interceptor and `TransactionHost.withTransaction` all go through it.
 */
export class TransactionRunner {
  /** Counters since start-up. */
  readonly stats: TransactionRunnerStats = {
    committed: 0,
    rolledBack: 0,
    hookFailures: 0,
  };
  private readonly logger = new Logger('Transactional');
  /** Transactions (with their after-commit work) in progress, and who waits for none. */
  private active = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly drivers: ReadonlyMap<string, TransactionDriver>,
    private readonly hookTimeoutMs = 10_000,
  ) {}

  /**
   * The runner of the most recently initialised `TransactionalModule`; `@Transactional` on
   * provider methods uses it, since decorators run before dependency injection.
   */
  static current(where: string): TransactionRunner {
    if (!currentRunner) {
      throw new TransactionalError(
        `${where} is decorated with @Transactional(), but TransactionalModule is not ` +
          `initialised. Import TransactionalModule.forRoot() in the application module and ` +
          `call the method after the application has started (app.init()).`,
      );
    }
    return currentRunner;
  }

  /** Makes this runner the one `@Transactional` methods use (done by the module on init). */
  activate(): void {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    currentRunner = this;
  }

  /** Undoes `activate()` if this runner is still the active one. */
  deactivate(): void {
    if (currentRunner === this) currentRunner = undefined;
  }

  /** The driver of a connection, or an `UnknownConnectionError` naming `where`. */
  driver(connectionName: string, where = 'TransactionHost'): TransactionDriver {
    const driver = this.drivers.get(connectionName);
    if (!driver) throw new UnknownConnectionError(connectionName, where);
    return driver;
  }

  /** Runs `fn` in a scope with the given options; `where` names the caller in errors. */
  run<T>(
    options: TransactionalOptions,
    fn: () => Promise<T>,
    where = 'Transactional scope',
  ): Promise<T> {
    const connection = options.connectionName ?? DEFAULT_CONNECTION_NAME;
    const current = transactionStorage.get(connection);
    switch (options.propagation ?? Propagation.Required) {
      case Propagation.Required:
        return current ? fn() : this.runNew(connection, options, fn, where);
      case Propagation.RequiresNew:
        return this.runNew(connection, options, fn, where);
      case Propagation.Nested:
        return current
          ? this.runSavepoint(connection, current, fn)
          : this.runNew(connection, options, fn, where);
      case Propagation.Supports:
        return fn();
      case Propagation.Mandatory:
        if (!current) {
          return Promise.reject(
            new TransactionRequiredError(where, connection),
          );
        }
        return fn();
      case Propagation.Never:
        if (current) {
          return Promise.reject(
            new TransactionNotAllowedError(where, connection),
          );
        }
        return fn();
      case Propagation.NotSupported:
        return current
          ? transactionStorage.run(connection, undefined, fn)
          : fn();
      default:
        return Promise.reject(
          new TransactionalError(
            `${where}: unknown propagation "${String(options.propagation)}"; use a ` +
              `value of the Propagation enum.`,
          ),
        );
    }
  }

  /**
   * Waits (at most `timeoutMs`) for the transactions in progress and their after-commit work to
   * end; used on shutdown. Resolves with how many were still running when it gave up.
   */
  async drain(timeoutMs: number): Promise<number> {
    if (this.active === 0) return 0;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
      new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs))),
    ]);
    clearTimeout(timer);
    return this.active;
  }

  private async runNew<T>(
    connection: string,
    options: TransactionalOptions,
    fn: () => Promise<T>,
    where: string,
  ): Promise<T> {
    this.active++;
    try {
      return await this.runNewTracked(connection, options, fn, where);
    } finally {
      if (--this.active === 0 && this.idleWaiters.length > 0) {
        for (const wake of this.idleWaiters.splice(0)) wake();
      }
    }
  }

  private async runNewTracked<T>(
    connection: string,
    options: TransactionalOptions,
    fn: () => Promise<T>,
    where: string,
  ): Promise<T> {
    const handle = await this.driver(connection, where).begin(
      options.isolationLevel,
    );
    const tx = new TransactionContext(connection, handle);
    let result: T;
    try {
      result = await transactionStorage.run(
        connection,
        { tx, frame: tx.root },
        async () => {
          const value = await fn();
          for (const hook of tx.beforeCommit) await hook.run();
          return value;
        },
      );
    } catch (error) {
      await this.end(tx, () => handle.rollback(), where);
      await this.runHooks(tx.root.afterRollback, 'after-rollback');
      throw error;
    }
    try {
      await handle.commit();
    } catch (error) {
      await this.end(tx, () => handle.rollback(), where);
      await this.runHooks(tx.root.afterRollback, 'after-rollback');
      throw error;
    }
    this.stats.committed++;
    if (FAILPOINT === 'after-commit' && tx.root.afterCommit.length > 0) {
      process.kill(process.pid, 'SIGKILL');
    }
    await handle.release().catch((error: unknown) => {
      this.logger.error(
        `${where}: releasing the connection failed: ${errorText(error)}`,
      );
    });
    await this.runHooks(tx.root.afterCommit, 'after-commit');
    return result;
  }

  /** Rolls back (a failed rollback is logged, not thrown) and releases the connection. */
  private async end(
    tx: TransactionContext,
    rollback: () => Promise<void>,
    where: string,
  ) {
    this.stats.rolledBack++;
    try {
      await rollback();
    } catch (error) {
      this.logger.error(`${where}: rollback failed: ${errorText(error)}`);
    }
    await tx.handle.release().catch((error: unknown) => {
      this.logger.error(
        `${where}: releasing the connection failed: ${errorText(error)}`,
      );
    });
  }

  private async runSavepoint<T>(
    connection: string,
    current: TransactionScope,
    fn: () => Promise<T>,
  ): Promise<T> {
    const { tx } = current;
    const name = tx.nextSavepointName();
    await tx.handle.savepoint('create', name);
    const frame = new HookFrame();
    let result: T;
    try {
      result = await transactionStorage.run(connection, { tx, frame }, fn);
    } catch (error) {
      // NOTE: if the savepoint cannot be rolled back the connection is broken; the outer
      // scope's commit will fail, so the original error is the one worth rethrowing.
      await tx.handle
        .savepoint('rollback', name)
        .catch((rollbackError: unknown) => {
          this.logger.error(
            `rollback to savepoint failed: ${errorText(rollbackError)}`,
          );
        });
      await this.runHooks(frame.afterRollback, 'after-rollback');
      throw error;
    }
    await tx.handle.savepoint('release', name);
    frame.mergeInto(current.frame);
    return result;
  }

  /**
   * Runs hooks in order, each awaited, with no transaction bound in CLS. A hook that throws or
   * outlives the timeout is logged and counted; the next one still runs. Never rejects.
   */
  runHooks(hooks: readonly TransactionHook[], phase: string): Promise<void> {
    if (hooks.length === 0) return Promise.resolve();
    return transactionStorage.runDetached(async () => {
      for (const hook of hooks) {
        try {
          const result = hook.run();
          if (isThenable(result)) await withTimeout(result, this.hookTimeoutMs);
        } catch (error) {
          this.stats.hookFailures++;
          this.logger.error(
            `${phase} step failed: ${hook.describe()}: ${errorText(error)}`,
          );
        }
      }
    });
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof (value as PromiseLike<unknown> | undefined)?.then === 'function'
  );
}

/** A one-line description of a thrown value, for log lines. */
export function errorText(error: unknown): string {
  return error instanceof Error
    ? `${error.name}: ${error.message}`
    : String(error);
}
