import { Logger } from '@nestjs/common';
import { PlainQueueInTransactionError } from './errors/plain-queue-in-transaction.error';
import { transactionStorage } from './transaction-storage';
import type { PlainQueuePolicy } from './transactional.interfaces';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const BullQueue: { prototype: Record<string, any> } = require('bull');

const logger = new Logger('Transactional');
const PATCHED = ['add', 'addBulk'] as const;
const originals = new Map<string, (...args: any[]) => any>();
const policies: PlainQueuePolicy[] = [];

/** Whatever owns a transaction scope and may carry its application's policy (the runner). */
interface PolicyOwner {
  plainQueuePolicy?: PlainQueuePolicy;
}

function check(
  queueName: string,
  method: string,
): PlainQueueInTransactionError | undefined {
  const scopes = transactionStorage.openScopes();
  if (scopes.length === 0) return undefined;
  // NOTE: the policy of the application whose transaction is open (several applications may
  // run in one process); the most recently installed one for a runner that has none.
  let policy: PlainQueuePolicy = 'off';
  for (const scope of scopes) {
    const own =
      (scope.tx.owner as PolicyOwner).plainQueuePolicy ??
      policies[policies.length - 1] ??
      'off';
    if (own === 'throw' || (own === 'warn' && policy === 'off')) policy = own;
  }
  if (policy === 'off') return undefined;
  const error = new PlainQueueInTransactionError(queueName, method);
  if (policy === 'throw') return error;
  logger.warn(error.message);
  return undefined;
}

/**
 * Patches Bull's `Queue.prototype.add` and `addBulk` so that a call made while a transaction
 * is active is reported (`'warn'`) or rejected (`'throw'`). `TransactionAwareQueue` flushes
 * with no transaction bound, so it never trips the check. Each `install` is undone by one
 * `uninstall`; the most recent policy applies.
 */
export const plainQueueDetector = {
  /** Starts detecting with `policy`. */
  install(policy: PlainQueuePolicy): void {
    policies.push(policy);
    if (originals.size > 0) return;
    for (const method of PATCHED) {
      const original = BullQueue.prototype[method];
      originals.set(method, original);
      BullQueue.prototype[method] = function (
        this: { name: string },
        ...args: unknown[]
      ) {
        const error = check(this.name, method);
        return error ? Promise.reject(error) : original.apply(this, args);
      };
    }
  },

  /** Undoes one `install`; the patch is removed with the last one. */
  uninstall(policy: PlainQueuePolicy): void {
    const index = policies.lastIndexOf(policy);
    if (index >= 0) policies.splice(index, 1);
    if (policies.length > 0) return;
    for (const [method, original] of originals)
      BullQueue.prototype[method] = original;
    originals.clear();
  },
};
