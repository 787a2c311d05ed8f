import { optionalPeer } from '../adapters/optional-peers';

/** A stand-in for a BullMQ queue's identity, as BullMQ's `Job` constructor reads it. */
function queueIdentity(name: string, prefix = 'bull') {
  return {
    name,
    // NOTE: read by BullMQ 6's Job constructor (and the library's Redis client lookup): a
    // stand-in has no backend and no connection (no Redis).
    backend: undefined,
    connection: undefined,
    qualifiedName: `${prefix}:${name}`,
    toKey: (type: string) => `${prefix}:${name}:${type}`,
  };
}

/**
 * Gives the kit's in-memory BullMQ queue `queue` the members the library checks jobs with at
 * `add()` (BullMQ's `Job` class, and the queue identity its constructor reads), when `bullmq`
 * is installed: a job production would refuse (a float priority, a backoff jitter above 1,
 * deduplication without an id, ...) is then refused under the kit too, at the same place.
 * Internal to the kit.
 */
export function withBullMQJobRules<Q extends object>(
  queue: Q,
  name: string,
): Q {
  const Job = optionalPeer<{ Job?: unknown }>('bullmq')?.Job;
  if (typeof Job !== 'function') return queue;
  return Object.assign(queue, { Job, ...queueIdentity(name) });
}

/**
 * Gives the kit's in-memory flow producer the members the library checks flows with at `add()`
 * (BullMQ's `Job` class and `queueFromNode`), when `bullmq` is installed. Internal to the kit.
 */
export function withBullMQFlowRules<P extends object>(producer: P): P {
  const Job = optionalPeer<{ Job?: unknown }>('bullmq')?.Job;
  if (typeof Job !== 'function') return producer;
  return Object.assign(producer, {
    Job,
    queueFromNode: (node: { queueName: string }, prefix?: string) =>
      queueIdentity(node.queueName, prefix),
  });
}
