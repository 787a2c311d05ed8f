import type { EntityManager } from 'typeorm';
import type { TransactionHandle } from './transaction-driver';

/** A step to run after the outermost commit (or after a rollback). */
export interface TransactionHook {
  /** Says what the step does, for the log line written when it fails. */
  describe(): string;
  /** The work; awaited, in registration order. */
  run(): unknown;
}

/**
 * The hooks registered at one savepoint level of a transaction. A NESTED scope gets a frame of
 * its own: it is dropped when the savepoint rolls back, and handed to the parent frame when
 * the savepoint is released.
 */
export class HookFrame {
  /** Steps to run after the outermost commit, in order. */
  readonly afterCommit: TransactionHook[] = [];
  /** Steps to run after this frame's work is rolled back, in order. */
  readonly afterRollback: TransactionHook[] = [];
  /** Per-owner scratch state (a queue's pending batch), dropped with the frame. */
  readonly batches = new Map<object, unknown>();

  /** Hands this frame's hooks to `parent` when its savepoint is released. */
  mergeInto(parent: HookFrame): void {
    parent.afterCommit.push(...this.afterCommit);
    parent.afterRollback.push(...this.afterRollback);
  }
}

/** One physical transaction: its connection and the root frame of its hooks. */
export class TransactionContext {
  /** Frame of the scope that opened the transaction. */
  readonly root = new HookFrame();
  /**
   * Steps to run inside the transaction, in order, after the outermost scope's work returned
   * and before COMMIT (with the scope still bound). One that throws rolls the transaction back
   * and the error reaches the caller. Internal: the outbox uses it.
   */
  readonly beforeCommit: TransactionHook[] = [];
  private savepoints = 0;

  constructor(
    /** Connection (DataSource) name. */
    readonly connectionName: string,
    /** The open transaction. */
    readonly handle: TransactionHandle,
  ) {}

  /** EntityManager bound to the transaction. */
  get manager(): EntityManager {
    return this.handle.manager;
  }

  /** A savepoint name unique within this transaction. */
  nextSavepointName(): string {
    return `tx_sp_${++this.savepoints}`;
  }
}

/** What CLS holds for one connection while code runs in a transaction scope. */
export interface TransactionScope {
  /** The transaction. */
  readonly tx: TransactionContext;
  /** The frame (savepoint level) the code runs in; hooks it registers go here. */
  readonly frame: HookFrame;
}
