import { Logger } from '@nestjs/common';
import { optionalPeer } from './adapters/optional-peers';
import { PlainQueueInTransactionError } from './errors/plain-queue-in-transaction.error';
import { transactionStorage } from './transaction-storage';
import type { PlainQueuePolicy } from './transactional.interfaces';

type Prototype = Record<string, any>;
type What = ConstructorParameters<typeof PlainQueueInTransactionError>[2];

/** A class whose `add` / `addBulk` are checked, and how to name the queue of a call. */
interface Target {
  prototype: Prototype;
  what: What;
  queueName(self: any, args: unknown[]): string;
  /** Methods besides `add` / `addBulk` that write jobs to Redis at once. */
  extra?: readonly string[];
}

const logger = new Logger('Transactional');
const PATCHED = ['add', 'addBulk'] as const;
const originals = new Map<Prototype, Map<string, (...args: any[]) => any>>();
const policies: PlainQueuePolicy[] = [];

/** Whatever owns a transaction scope and may carry its application's policy (the runner). */
interface PolicyOwner {
  plainQueuePolicy?: PlainQueuePolicy;
}

/** The queue classes of the installed libraries (Bull, BullMQ: Queue and FlowProducer). */
function targets(): Target[] {
  const found: Target[] = [];
  const bull = optionalPeer<{ prototype: Prototype }>('bull');
  if (bull?.prototype) {
    found.push({
      prototype: bull.prototype,
      what: 'Bull queue',
      queueName: (self: { name: string }) => self.name,
    });
  }
  const bullmq = optionalPeer<{
    Queue: { prototype: Prototype };
    FlowProducer: { prototype: Prototype };
  }>('bullmq');
  if (bullmq) {
    found.push({
      prototype: bullmq.Queue.prototype,
      what: 'BullMQ queue',
      queueName: (self: { name: string }) => self.name,
      // NOTE: writes a schedule and its first job to Redis at once, without add().
      extra: ['upsertJobScheduler'],
    });
    found.push({
      prototype: bullmq.FlowProducer.prototype,
      what: 'BullMQ FlowProducer',
      // NOTE: add(flow) or addBulk(flows): named by the (first) root job's queue.
      queueName: (_self, [flow]) => {
        const root = (Array.isArray(flow) ? flow[0] : flow) as
          | { queueName?: string }
          | undefined;
        return root?.queueName ?? '?';
      },
    });
  }
  return found;
}

function check(
  queueName: string,
  method: string,
  what: What,
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
  const error = new PlainQueueInTransactionError(queueName, method, what);
  if (policy === 'throw') return error;
  logger.warn(error.message);
  return undefined;
}

/**
 * Patches `add` and `addBulk` of Bull's `Queue`, BullMQ's `Queue` and BullMQ's `FlowProducer`
 * (those of the libraries installed) so that a call made while a transaction is active is
 * reported (`'warn'`) or rejected (`'throw'`). `TransactionAwareQueue` and
 * `TransactionAwareFlowProducer` flush with no transaction bound, so they never trip the
 * check. Each `install` is undone by one `uninstall`; the most recent policy applies.
 */
export const plainQueueDetector = {
  /** Starts detecting with `policy`. */
  install(policy: PlainQueuePolicy): void {
    policies.push(policy);
    if (originals.size > 0) return;
    for (const target of targets()) {
      const saved = new Map<string, (...args: any[]) => any>();
      originals.set(target.prototype, saved);
      for (const method of [...PATCHED, ...(target.extra ?? [])]) {
        const original = target.prototype[method];
        if (typeof original !== 'function') continue;
        saved.set(method, original);
        target.prototype[method] = function (
          this: unknown,
          ...args: unknown[]
        ) {
          const error = check(
            target.queueName(this, args),
            method,
            target.what,
          );
          return error ? Promise.reject(error) : original.apply(this, args);
        };
      }
    }
  },

  /** Undoes one `install`; the patch is removed with the last one. */
  uninstall(policy: PlainQueuePolicy): void {
    const index = policies.lastIndexOf(policy);
    if (index >= 0) policies.splice(index, 1);
    if (policies.length > 0) return;
    for (const [prototype, saved] of originals) {
      for (const [method, original] of saved) prototype[method] = original;
    }
    originals.clear();
  },
};
