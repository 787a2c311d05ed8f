import { Logger } from '@nestjs/common';
import { Propagation } from './propagation';
import { TransactionNotAllowedError } from './errors/transaction-not-allowed.error';
import { TransactionRequiredError } from './errors/transaction-required.error';
import { TransactionalError } from './errors/transactional.error';
import { UnexpectedRollbackError } from './errors/unexpected-rollback.error';
import { UnknownConnectionError } from './errors/unknown-connection.error';
import { runnerRegistry } from './runner-registry';
import {
  TransactionContext,
  TransactionHook,
  TransactionScope,
} from './transaction-context';
import type { TransactionDriver } from './transaction-driver';
import { transactionStorage } from './transaction-storage';
import { DEFAULT_CONNECTION_NAME } from './transactional.constants';
import type {
  PlainQueuePolicy,
  TransactionalOptions,
} from './transactional.interfaces';
import { DeadlineQueue } from './deadline-queue';
import {
  LibrarySpan,
  endSpan,
  tracingOn,
  startSpan,
  withSpan,
} from './observability/tracing';

/** Span attribute that says how a transaction ended: `commit`, `rollback` or `not_started`. */
const OUTCOME = 'transaction.outcome';

/** Counters of a runner, for health checks and metrics. */
export interface TransactionRunnerStats {
  /** Transactions committed (savepoints not counted). */
  committed: number;
  /** Transactions rolled back, including failed commits and commits Postgres turned into rollbacks. */
  rolledBack: number;
  /** Savepoints (NESTED scopes) rolled back. */
  savepointsRolledBack: number;
  /** After-commit and after-rollback steps that threw or timed out. */
  hookFailures: number;
  /** After-commit phases that outlived `afterCommitTimeoutMs` and went on in the background. */
  hookPhasesDetached: number;
}

// NOTE: a fail point for process-level fault tests only: with TRANSACTIONAL_FAILPOINT set to
// 'after-commit' the process kills itself between a commit that has after-commit work (queued
// jobs, hooks) and that work: the window durable mode closes. Read once, so the hot path pays one comparison.
const FAILPOINT = process.env.TRANSACTIONAL_FAILPOINT;

/**
 * Opens, joins, suspends and ends transaction scopes with the propagation rules of
 * `Propagation`, and runs the deferred work of a transaction after its outermost commit.
 * `@Transactional`, its interceptor and `TransactionHost.withTransaction` all go through it.
 * Each application has its own runner.
 */
export class TransactionRunner {
  /**
   * What the plain-queue detector does for a plain Bull `add()` inside this runner's
   * transactions (set by the module from `plainQueueInTransaction`).
   */
  plainQueuePolicy?: PlainQueuePolicy;
  /** Counters since start-up. */
  readonly stats: TransactionRunnerStats = {
    committed: 0,
    rolledBack: 0,
    savepointsRolledBack: 0,
    hookFailures: 0,
    hookPhasesDetached: 0,
  };
  private readonly logger = new Logger('Transactional');
  /** Transactions and after-commit phases in progress, and who waits for none. */
  private active = 0;
  private idleWaiters: (() => void)[] = [];
  /** Set once the application has shut down: no new scope is served. */
  private closed = false;
  /** Deadlines of after-commit phases and of their steps (all `hookTimeoutMs` long). */
  private readonly hookDeadlines: DeadlineQueue;

  constructor(
    private readonly drivers: ReadonlyMap<string, TransactionDriver>,
    /** Longest a caller waits for the after-commit (or after-rollback) work of one transaction. */
    private readonly hookTimeoutMs = 10_000,
  ) {
    this.hookDeadlines = new DeadlineQueue(hookTimeoutMs);
  }

  /** Makes this runner one that `@Transactional` methods may use (done by the module). */
  activate(): void {
    runnerRegistry.add(this);
  }

  /**
   * Undoes `activate()` (done by the module once its application has shut down, after the
   * drain): from then on every scope is refused with a `TransactionalError`.
   */
  deactivate(): void {
    this.closed = true;
    runnerRegistry.delete(this);
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
    if (this.closed) {
      return Promise.reject(
        new TransactionalError(
          `${where} is decorated with @Transactional(), but its application has been ` +
            `closed (its DataSources are gone). Call it while the application runs.`,
        ),
      );
    }
    const connection = options.connectionName ?? DEFAULT_CONNECTION_NAME;
    const bound = transactionStorage.get(connection);
    // NOTE: a scope of another runner (another application) is not this runner's transaction.
    const current = bound?.tx.owner === this ? bound : undefined;
    switch (options.propagation ?? Propagation.Required) {
      case Propagation.Required:
        return current
          ? this.join(current, fn, where)
          : this.runNew(connection, options, fn, where);
      case Propagation.RequiresNew:
        return this.runNew(connection, options, fn, where);
      case Propagation.Nested:
        return current
          ? this.runSavepoint(connection, current, fn, where)
          : this.runNew(connection, options, fn, where);
      case Propagation.Supports:
        return current ? this.join(current, fn, where) : fn();
      case Propagation.Mandatory:
        if (!current) {
          return Promise.reject(
            new TransactionRequiredError(where, connection),
          );
        }
        return this.join(current, fn, where);
      case Propagation.Never:
        if (current && !current.frame.closed) {
          return Promise.reject(
            new TransactionNotAllowedError(where, connection),
          );
        }
        return bound ? transactionStorage.run(connection, undefined, fn) : fn();
      case Propagation.NotSupported:
        return bound ? transactionStorage.run(connection, undefined, fn) : fn();
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

  /** Runs `fn` in the open scope `scope`; refused when that scope has already ended. */
  private join<T>(
    scope: TransactionScope,
    fn: () => Promise<T>,
    where: string,
  ): Promise<T> {
    try {
      scope.tx.target(scope.frame, where);
    } catch (error) {
      return Promise.reject(error);
    }
    return fn();
  }

  /** Counts one transaction or after-commit phase as no longer in progress (for `drain`). */
  private settle(): void {
    if (--this.active === 0 && this.idleWaiters.length > 0) {
      for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  private runNew<T>(
    connection: string,
    options: TransactionalOptions,
    fn: () => Promise<T>,
    where: string,
  ): Promise<T> {
    const span = tracingOn()
      ? startSpan('transaction', 'internal', {
          'db.connection': connection,
          'transaction.scope': where,
          'transaction.isolation_level': options.isolationLevel ?? 'default',
        })
      : undefined;
    if (!span) return this.runTransaction(connection, options, fn, where);
    // NOTE: the span is active inside, so the spans of deferred enqueues are its children.
    return withSpan(span, () =>
      this.runTransaction(connection, options, fn, where, span),
    );
  }

  /** Counts the transaction as in progress (for `drain`) while it runs. */
  private async runTransaction<T>(
    connection: string,
    options: TransactionalOptions,
    fn: () => Promise<T>,
    where: string,
    span?: LibrarySpan,
  ): Promise<T> {
    this.active++;
    try {
      let handle;
      try {
        handle = await this.driver(connection, where).begin(
          options.isolationLevel,
          { where, insideTransaction: transactionStorage.hasAny() },
        );
      } catch (error) {
        endSpan(span, OUTCOME, 'not_started', error);
        throw error;
      }
      const tx = new TransactionContext(connection, handle, this);
      this.guardHandle(connection, tx);
      const scope: TransactionScope = { tx, frame: tx.root };
      let result: T;
      try {
        result = await transactionStorage.run(connection, scope, fn);
        tx.closeRoot();
        // NOTE: MySQL: a transaction the database rolled back on its own runs nothing more
        // (the outbox's grace UPDATE would be refused with TransactionAbortedError); it ends
        // below with UnexpectedRollbackError.
        if (tx.beforeCommit.length > 0 && !tx.handle.isAborted?.()) {
          const pending = transactionStorage.run(connection, scope, () =>
            runSteps(tx.beforeCommit, 0),
          );
          if (pending) await pending;
        }
      } catch (error) {
        await this.rollback(tx, where, () => handle.rollback(), span, error);
        throw error;
      }
      let outcome;
      try {
        outcome = handle.isAborted?.()
          ? await handle.rollback().then(() => 'rolled-back' as const)
          : await handle.commit(tx.leadingCommit?.());
      } catch (error) {
        await this.rollback(tx, where, () => handle.rollback(), span, error);
        throw error;
      }
      if (outcome === 'rolled-back') {
        const error = new UnexpectedRollbackError(where, 'transaction');
        await this.rollback(tx, where, () => Promise.resolve(), span, error);
        throw error;
      }
      this.stats.committed++;
      const hooks = tx.end('committed');
      if (FAILPOINT === 'after-commit' && hooks.length > 0) {
        process.kill(process.pid, 'SIGKILL');
      }
      // NOTE: not awaited: TypeORM's query runners hand the connection back to the pool within
      // the call, and a failure is logged, so the after-commit work need not wait a turn for it.
      void this.release(tx, where);
      if (hooks.length > 0) await this.runHooks(hooks, 'after-commit', where);
      endSpan(span, OUTCOME, 'commit');
      return result;
    } finally {
      this.settle();
    }
  }

  /**
   * Makes the statements sent on `tx`'s connection wait their turn while a savepoint is open
   * (`TransactionContext.turn`). Done when the transaction opens its first savepoint: until
   * then every statement may go at once, and the gate would cost each one a CLS lookup.
   */
  private gateStatements(connection: string, tx: TransactionContext): void {
    tx.handle.setStatementGate?.(() => {
      const scope = transactionStorage.get(connection);
      return scope?.tx === tx ? tx.turn(scope.frame) : undefined;
    });
  }

  /** Turns the manager's own `transaction()` into a NESTED scope of `tx`. */
  private guardHandle(connection: string, tx: TransactionContext): void {
    tx.handle.setNestedTransactions?.((work) => {
      const scope = transactionStorage.get(connection);
      if (scope?.tx !== tx) {
        return Promise.reject(
          new TransactionalError(
            `EntityManager.transaction() was called on the manager of a transaction on ` +
              `connection "${connection}" from outside that transaction's scope. Use the ` +
              `manager only inside its @Transactional() scope.`,
          ),
        );
      }
      return this.run(
        { connectionName: connection, propagation: Propagation.Nested },
        work,
        'EntityManager.transaction()',
      );
    });
  }

  /**
   * Rolls back (a failed rollback is logged, not thrown), releases, runs after-rollback hooks,
   * then ends the transaction's span (if any) with the error that caused the rollback.
   */
  private async rollback(
    tx: TransactionContext,
    where: string,
    rollback: () => Promise<void>,
    span?: LibrarySpan,
    cause?: unknown,
  ) {
    this.stats.rolledBack++;
    const hooks = tx.end('rolled-back');
    try {
      await rollback();
    } catch (error) {
      this.logger.error(`${where}: rollback failed: ${errorText(error)}`);
    }
    await this.release(tx, where);
    await this.runHooks(hooks, 'after-rollback', where);
    endSpan(span, OUTCOME, 'rollback', cause);
  }

  private release(tx: TransactionContext, where: string): Promise<void> {
    return tx.handle.release().catch((error: unknown) => {
      this.logger.error(
        `${where}: releasing the connection failed: ${errorText(error)}`,
      );
    });
  }

  private async runSavepoint<T>(
    connection: string,
    current: TransactionScope,
    fn: () => Promise<T>,
    where: string,
  ): Promise<T> {
    const { tx } = current;
    if (!tx.gated) {
      tx.gated = true;
      this.gateStatements(connection, tx);
    }
    const frame = await tx.openSavepoint(current.frame, where);
    const name = frame.savepoint!;
    // NOTE: a scope left running by its parent may outlast it: once the parent's RELEASE or
    // ROLLBACK TO is on its way (or done), the server ends this savepoint with it, and this
    // scope's work follows the parent's outcome (`closeSavepoint` merges or drops its frame).
    // Sending its own ROLLBACK TO or RELEASE then would fail ("savepoint does not exist"), and
    // on Postgres abort the whole transaction; so nothing is sent, and its error still rejects.
    const endedAbove = () => frame.closed || frame.ending;
    const rollback = async () => {
      this.stats.savepointsRolledBack++;
      // NOTE: before the ROLLBACK TO is sent: a statement of this scope's code still running
      // would otherwise be queued behind it and land in the enclosing frame.
      tx.beginSavepointEnd(frame, 'rollback');
      // NOTE: if the savepoint cannot be rolled back the connection is broken; the outer
      // scope's commit will fail, so the original error is the one worth rethrowing.
      await tx.handle
        .savepoint('rollback', name)
        .catch((rollbackError: unknown) => {
          this.logger.error(
            `${where}: rollback to savepoint failed: ${errorText(rollbackError)}`,
          );
        });
      tx.closeSavepoint(frame, 'rolled-back');
    };
    try {
      await tx.handle.savepoint('create', name);
    } catch (error) {
      tx.closeSavepoint(frame, 'rolled-back');
      throw error;
    }
    let result: T;
    try {
      result = await transactionStorage.run(connection, { tx, frame }, fn);
    } catch (error) {
      if (!endedAbove()) await rollback();
      throw error;
    }
    if (endedAbove()) {
      // NOTE: its work went with the parent's end: released into the enclosing frame (later
      // statements followed the RELEASE there) or rolled back (later statements were refused).
      return result;
    }
    if (tx.handle.isAborted?.()) {
      await rollback();
      throw new UnexpectedRollbackError(where, 'savepoint');
    }
    // NOTE: before the RELEASE is sent: code this scope left running must not open a savepoint
    // behind it (it would outlive this one on the server); its statements may follow it.
    tx.beginSavepointEnd(frame, 'release');
    try {
      await tx.handle.savepoint('release', name);
    } catch (error) {
      // NOTE: node-postgres rejects a failing statement on the server's error, before the
      // ReadyForQuery that reports the transaction aborted, and a statement left running when
      // the scope returns fails later still; so the check above can miss the abort, and then
      // Postgres refuses the RELEASE. By now the status has arrived: the scope's own statement
      // failed, which is an unexpected rollback of the savepoint, not a failed RELEASE.
      const aborted = tx.handle.isAborted?.() ?? false;
      await rollback();
      if (aborted) throw new UnexpectedRollbackError(where, 'savepoint');
      throw error;
    }
    tx.closeSavepoint(frame, 'released');
    return result;
  }

  /**
   * Runs hooks in order, each awaited, with no transaction bound in CLS. A hook that throws or
   * times out is logged and counted; the next one still runs. The caller waits at most
   * `afterCommitTimeoutMs` for all of them together; what is left then goes on in the
   * background (each further step bounded by the same timeout). Never rejects.
   */
  runHooks(
    hooks: readonly TransactionHook[],
    phase: string,
    where = 'transaction',
  ): Promise<void> {
    if (hooks.length === 0) return Promise.resolve();
    if (hooks.length === 1) return this.runSingle(hooks[0], phase, where);
    return new Promise<void>((resolve) => {
      const deadline = this.hookDeadlines.start(() => {
        this.detached(phase, where);
        resolve();
      });
      const done = () => {
        this.settle();
        deadline.cancel();
        resolve();
      };
      this.active++;
      transactionStorage
        .runDetached(() => this.runSequence(hooks, phase))
        .then(done, done);
    });
  }

  /**
   * `runHooks` of a single step (most transactions: one batch of jobs). The phase and its only
   * step start together and last as long, so one deadline serves both: when it passes, the
   * phase is detached and the step is counted as timed out, as two deadlines would.
   */
  private runSingle(
    hook: TransactionHook,
    phase: string,
    where: string,
  ): Promise<void> {
    this.active++;
    let result: unknown;
    try {
      result = transactionStorage.runDetached(() => hook.run());
    } catch (error) {
      this.stepFailed(hook, phase, error);
    }
    if (!isThenable(result)) {
      this.settle();
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      let pending = true;
      let abandoned = false;
      const end = (error?: { cause: unknown }) => {
        if (!pending) return;
        pending = false;
        if (error) this.stepFailed(hook, phase, error.cause);
        this.settle();
        resolve();
      };
      const deadline = this.hookDeadlines.start(() => {
        if (!pending) return;
        this.detached(phase, where);
        // NOTE: the step goes on in the background: `drain` (shutdown) waits for it, so that the
        // queues are not closed under an enqueue still running.
        abandoned = true;
        this.active++;
        end({ cause: new Error(`timed out after ${this.hookTimeoutMs} ms`) });
      });
      let settled = false;
      const finished = (error?: { cause: unknown }) => {
        // NOTE: once: a hook's own thenable may call back twice, or call back and throw.
        if (settled) return;
        settled = true;
        deadline.cancel();
        if (abandoned) this.settle();
        end(error);
      };
      follow(
        result,
        () => finished(),
        (error: unknown) => finished({ cause: error }),
      );
    });
  }

  /** Counts and logs an after-commit (or after-rollback) phase the caller stopped waiting for. */
  private detached(phase: string, where: string): void {
    this.stats.hookPhasesDetached++;
    this.logger.warn(
      `${where}: ${phase} work still running after ${this.hookTimeoutMs} ms; the caller ` +
        `goes on, the rest of it continues in the background`,
    );
  }

  /** Counts and logs a step that threw, rejected or timed out. */
  private stepFailed(hook: TransactionHook, phase: string, error: unknown) {
    this.stats.hookFailures++;
    this.logger.error(
      `${phase} step failed: ${hook.describe()}: ${errorText(error)}`,
    );
  }

  /**
   * Settles as `work` does, or rejects once `hookTimeoutMs` have passed; `work` then goes on in
   * the background, counted in progress until it settles (`drain` waits for it on shutdown).
   */
  private bounded(work: PromiseLike<unknown>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      let abandoned = false;
      const deadline = this.hookDeadlines.start(() => {
        abandoned = true;
        this.active++;
        reject(new Error(`timed out after ${this.hookTimeoutMs} ms`));
      });
      let settled = false;
      const finished = () => {
        // NOTE: once: a hook's own thenable may call back twice, or call back and throw.
        if (settled) return false;
        settled = true;
        deadline.cancel();
        if (abandoned) this.settle();
        return true;
      };
      follow(
        work,
        (value) => {
          if (finished()) resolve(value);
        },
        (error: unknown) => {
          if (finished()) reject(error);
        },
      );
    });
  }

  private async runSequence(
    hooks: readonly TransactionHook[],
    phase: string,
  ): Promise<void> {
    for (const hook of hooks) {
      try {
        const result = hook.run();
        if (isThenable(result)) await this.bounded(result);
      } catch (error) {
        this.stepFailed(hook, phase, error);
      }
    }
  }
}

/**
 * Runs `steps` from `from` on, in order, each awaited; synchronously as long as they return
 * no promise (`undefined` then). Rejects, or throws, with the first step that fails.
 */
function runSteps(
  steps: readonly TransactionHook[],
  from: number,
): Promise<void> | undefined {
  for (let i = from; i < steps.length; i++) {
    const result = steps[i].run();
    if (isThenable(result)) {
      return Promise.resolve(result).then(() => runSteps(steps, i + 1));
    }
  }
  return undefined;
}

/** Whether `value` is a promise (or another thenable). */
/**
 * `thenable.then(onFulfilled, onRejected)`, with a `then` that throws (a hook's own thenable)
 * taken as a rejection: the step fails, is logged and counted, and its deadline is cancelled,
 * rather than the throw reaching the caller of a committed transaction.
 */
function follow<T>(
  thenable: PromiseLike<T>,
  onFulfilled: (value: T) => void,
  onRejected: (error: unknown) => void,
): void {
  try {
    thenable.then(onFulfilled, onRejected);
  } catch (error) {
    onRejected(error);
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
