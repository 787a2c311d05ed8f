import type { EntityManager } from 'typeorm';
import { TransactionClosedError } from './errors/transaction-closed.error';
import type { LeadingStatement, TransactionHandle } from './transaction-driver';

/** A step to run after the outermost commit (or after a rollback). */
export interface TransactionHook {
  /** Says what the step does, for the log line written when it fails. */
  describe(): string;
  /** The work; awaited, in registration order. */
  run(): unknown;
  /**
   * Called instead of `run` when the after-commit step is dropped: its transaction, or the
   * savepoint it was registered in, rolled back. Synchronous; must not throw.
   */
  dropped?(): void;
}

/** Tells each of `hooks` that it will never run. */
function drop(hooks: readonly TransactionHook[]): void {
  for (const hook of hooks) hook.dropped?.();
}

/**
 * The hooks registered at one savepoint level of a transaction. A NESTED scope gets a frame of
 * its own: its after-commit work is dropped when the savepoint rolls back, and handed to the
 * parent frame when the savepoint is released.
 */
export class HookFrame {
  /** Steps to run after the outermost commit, in order. */
  readonly afterCommit: TransactionHook[] = [];
  /** Steps to run once this frame's work is rolled back, in order. */
  readonly afterRollback: TransactionHook[] = [];
  /** Set when the scope that opened this frame has ended: it takes no more work. */
  closed = false;
  /**
   * Set when the ROLLBACK TO (`'rollback'`) or RELEASE (`'release'`) of this frame's savepoint
   * (or of one below it) is on its way. A savepoint opened under it now would outlive it on the
   * server, so it is refused. A statement of it sent now runs after it, in the enclosing frame:
   * refused during a rollback (its scope's work is being undone), let through during a release
   * (where the scope's work goes anyway).
   */
  ending?: 'release' | 'rollback';

  constructor(
    /** Name of the savepoint this frame stands for; none for the transaction's root frame. */
    readonly savepoint?: string,
  ) {}

  /** Hands this frame's hooks to `parent` when its savepoint is released. */
  mergeInto(parent: HookFrame): void {
    parent.afterCommit.push(...this.afterCommit);
    parent.afterRollback.push(...this.afterRollback);
  }
}

/**
 * One physical transaction: its connection, the stack of open savepoint frames and the hooks.
 *
 * Savepoints on one connection are a stack, so the context keeps concurrent code of one
 * transaction in step with it: a NESTED scope waits until the savepoint of a concurrent sibling
 * has ended, and while a savepoint is open, statements of the scopes around it (code running
 * concurrently with the NESTED scope) wait until it has ended (`turn`). So every statement and
 * every registered job or hook belongs to the frame of the scope that issued it, and a
 * rolled-back savepoint drops exactly its own rows and its own work.
 */
export class TransactionContext {
  /** Frame of the scope that opened the transaction. */
  readonly root = new HookFrame();
  /**
   * Steps to run inside the transaction, in order, after the outermost scope's work returned
   * and before COMMIT (with the scope still bound). One that throws rolls the transaction back
   * and the error reaches the caller. Internal: the outbox uses it.
   */
  readonly beforeCommit: TransactionHook[] = [];
  private readonly stack: HookFrame[] = [this.root];
  /** After-rollback hooks of rolled-back savepoints; they run when the transaction ends. */
  private readonly savepointRollbackHooks: TransactionHook[] = [];
  /** Set by `end()`: the transaction is over, no statement of it may be sent any more. */
  private finished = false;
  /** NESTED scopes waiting to open a savepoint, and statements waiting for their turn. */
  private waiters: {
    parent: HookFrame;
    /** Whether it opens a savepoint (which changes the innermost frame). */
    opens: boolean;
    open: () => void;
    fail: (error: Error) => void;
  }[] = [];
  private savepoints = 0;
  /**
   * Whether the runner has made the connection's statements wait their turn (done when the
   * first savepoint opens). Internal to the runner.
   */
  gated = false;
  /** What the outbox writer keeps of this transaction's rows, if it wrote any. Internal. */
  outboxWrites?: object;
  /**
   * The statement to run in front of COMMIT, in the same round trip (the outbox rows held back
   * by the outbox writer), asked for right before the commit. Internal.
   */
  leadingCommit?: () => LeadingStatement | undefined;

  constructor(
    /** Connection (DataSource) name. */
    readonly connectionName: string,
    /** The open transaction. */
    readonly handle: TransactionHandle,
    /** The runner that opened it; scopes of other runners do not join it. */
    readonly owner: object,
  ) {}

  /** EntityManager bound to the transaction. */
  get manager(): EntityManager {
    return this.handle.manager;
  }

  /** Whether the transaction has ended (its outermost scope returned or threw). */
  get ended(): boolean {
    return this.root.closed;
  }

  /** The innermost open frame: where work registered now belongs. */
  get top(): HookFrame {
    return this.stack[this.stack.length - 1];
  }

  /**
   * The frame that work registered from a scope bound to `frame` goes to (that frame), or a
   * `TransactionClosedError` naming `what` when that scope has ended.
   */
  target(frame: HookFrame, what: string): HookFrame {
    if (frame.closed)
      throw new TransactionClosedError(what, this.connectionName);
    return frame;
  }

  /**
   * When a statement from code bound to `frame` may run: `undefined` (now) unless a savepoint
   * opened above `frame` is still open; then a promise that resolves once `frame` is the
   * innermost open frame again. A rejected promise when `frame` is a savepoint that has ended.
   */
  turn(frame: HookFrame): Promise<void> | undefined {
    // NOTE: a savepoint frame that has ended refuses statements (they would land in whatever
    // frame is open now); the root frame closes when the outermost scope returns, and the
    // runner's own statements (before-commit steps, COMMIT) still follow.
    if ((frame.closed || frame.ending === 'rollback') && frame !== this.root) {
      return Promise.reject(
        new TransactionClosedError('A statement', this.connectionName),
      );
    }
    if (
      this.stack.length === 1 ||
      frame === this.top ||
      frame.closed ||
      !this.stack.includes(frame)
    ) {
      return undefined;
    }
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({
        parent: frame,
        opens: false,
        open: resolve,
        fail: reject,
      });
    });
  }

  /**
   * Resolves with a new savepoint frame on top of `parent` once `parent` is the innermost open
   * frame (at once, unless a sibling NESTED scope still holds its savepoint). Rejects when
   * `parent`'s scope has ended meanwhile.
   */
  openSavepoint(parent: HookFrame, what: string): Promise<HookFrame> {
    // NOTE: a frame whose end is on its way is closed to new savepoints too: one opened on the
    // server after its ROLLBACK TO or RELEASE would outlive it there, and the enclosing frame's
    // statements would run inside it, rolled back when its scope ends.
    if (parent.closed || parent.ending) {
      return Promise.reject(
        new TransactionClosedError(what, this.connectionName),
      );
    }
    if (this.top === parent) return Promise.resolve(this.push());
    return new Promise<HookFrame>((resolve, reject) => {
      this.waiters.push({
        parent,
        opens: true,
        open: () => resolve(this.push()),
        fail: reject,
      });
    }).catch((error: Error) => {
      throw error instanceof TransactionClosedError
        ? new TransactionClosedError(what, this.connectionName)
        : error;
    });
  }

  /**
   * Marks `frame` and the frames opened above it (scopes it left running) as ending, before its
   * ROLLBACK TO SAVEPOINT (`kind` `'rollback'`) or RELEASE SAVEPOINT is sent: from now on new
   * savepoints under them are refused (`openSavepoint`: one would outlive them on the server),
   * and during a rollback their statements too (`turn`, `wake`: they would run in the enclosing
   * frame, which keeps what they write). A rollback is never downgraded to a release.
   */
  beginSavepointEnd(frame: HookFrame, kind: 'release' | 'rollback'): void {
    const index = this.stack.lastIndexOf(frame);
    if (index <= 0) return;
    for (let i = index; i < this.stack.length; i++) {
      if (this.stack[i].ending !== 'rollback') this.stack[i].ending = kind;
    }
  }

  /**
   * Ends the savepoint of `frame` (the innermost one): a released frame hands its hooks to its
   * parent; a rolled-back one drops its after-commit work and keeps its after-rollback hooks
   * for the end of the transaction. Then the next waiting sibling may open its savepoint.
   */
  closeSavepoint(frame: HookFrame, outcome: 'released' | 'rolled-back'): void {
    const index = this.stack.lastIndexOf(frame);
    if (index <= 0) return; // already dropped by the end of the transaction
    // NOTE: frames above it belong to scopes that did not end before it (not awaited); the
    // database releases or rolls them back with it, so their work goes the same way.
    const dropped = this.stack.splice(index);
    if (outcome === 'released') {
      // NOTE: statements their scopes sent while open, still waiting for their turn, go to the
      // parent frame with the hooks: the database released their savepoints' work into it.
      for (const waiter of this.waiters) {
        if (!waiter.opens && dropped.includes(waiter.parent))
          waiter.parent = this.top;
      }
    }
    for (let i = dropped.length - 1; i >= 0; i--) {
      const closing = dropped[i];
      closing.closed = true;
      const parent = i > 0 ? dropped[i - 1] : this.top;
      if (outcome === 'released') closing.mergeInto(parent);
      else {
        drop(closing.afterCommit);
        this.savepointRollbackHooks.push(...closing.afterRollback);
      }
    }
    this.wake();
  }

  /**
   * Ends the transaction: no frame takes work any more, waiting NESTED scopes are refused, and
   * the hooks to run for `outcome` are returned (after-rollback hooks of rolled-back savepoints
   * first, then those of every frame still open, root first, each list in registration order).
   */
  end(outcome: 'committed' | 'rolled-back'): readonly TransactionHook[] {
    this.finished = true;
    if (this.stack.length === 1 && this.savepointRollbackHooks.length === 0) {
      // NOTE: the common case, no savepoint: the root frame's own list (closed to new work).
      const root = this.root;
      root.closed = true;
      if (outcome === 'rolled-back') drop(root.afterCommit);
      this.wake();
      return outcome === 'committed' ? root.afterCommit : root.afterRollback;
    }
    const hooks = [...this.savepointRollbackHooks];
    for (const frame of this.stack) {
      frame.closed = true;
      if (outcome === 'rolled-back') drop(frame.afterCommit);
      hooks.push(
        ...(outcome === 'committed' ? frame.afterCommit : frame.afterRollback),
      );
    }
    this.stack.length = 1;
    this.wake();
    return hooks;
  }

  /** Closes the root frame to new work (the outermost scope returned); the stack stays. */
  closeRoot(): void {
    this.root.closed = true;
  }

  private push(): HookFrame {
    const frame = new HookFrame(`tx_sp_${++this.savepoints}`);
    this.stack.push(frame);
    return frame;
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const waiting = this.waiters;
    this.waiters = [];
    for (const waiter of waiting) {
      // NOTE: the root frame closes when the outermost scope returns; statements it sent before
      // (waiting here for a savepoint left running) still go before the COMMIT, as in `turn`.
      // A statement of a frame whose ROLLBACK TO is on its way is refused as in `turn`: it would
      // follow it and run in the enclosing frame (during a RELEASE it may: see `closeSavepoint`).
      const refused = waiter.opens
        ? waiter.parent.closed || waiter.parent.ending || this.ended
        : ((waiter.parent.closed || waiter.parent.ending === 'rollback') &&
            waiter.parent !== this.root) ||
          this.finished;
      if (refused) {
        waiter.fail(new TransactionClosedError('', this.connectionName));
      } else if (this.top === waiter.parent) {
        // NOTE: in arrival order; once a savepoint opens, the rest wait for it in turn.
        waiter.open();
      } else {
        this.waiters.push(waiter);
      }
    }
  }
}

/** What CLS holds for one connection while code runs in a transaction scope. */
export interface TransactionScope {
  /** The transaction. */
  readonly tx: TransactionContext;
  /**
   * The frame of the scope the code runs in (the root frame, or the savepoint frame of a NESTED
   * scope); the code may register work only while it is open.
   */
  readonly frame: HookFrame;
}
