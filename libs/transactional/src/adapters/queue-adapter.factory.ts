import { TransactionalError } from '../errors/transactional.error';
import { BullMQQueueAdapter } from '../bullmq/bullmq-queue-adapter';
import { BullQueueAdapter } from './bull-queue-adapter';
import { assertSupportedBullMQ, optionalPeer } from './optional-peers';
import type { QueueAdapter, QueueKind } from './queue-adapter';

/**
 * Which library `queue` belongs to: an instance of the installed `bullmq` `Queue` or of
 * `bull`'s; failing both (a second copy of a package, a stand-in), by its shape: BullMQ queues
 * have `waitUntilReady` and no `process` (a Bull queue processes its own jobs).
 */
export function detectQueueKind(queue: object): QueueKind {
  const bullmq = optionalPeer<{ Queue: new (...args: any[]) => object }>(
    'bullmq',
  );
  if (bullmq && queue instanceof bullmq.Queue) return 'bullmq';
  const bull = optionalPeer<new (...args: any[]) => object>('bull');
  if (typeof bull === 'function' && queue instanceof bull) return 'bull';
  const shape = queue as { waitUntilReady?: unknown; process?: unknown };
  return typeof shape.waitUntilReady === 'function' &&
    typeof shape.process !== 'function'
    ? 'bullmq'
    : 'bull';
}

/** The adapter of `queue`: of library `kind` when given, else the one `queue` belongs to. */
export function createQueueAdapter(
  queue: object,
  kind: QueueKind | undefined,
  queueName: string,
): QueueAdapter {
  const resolved = kind ?? detectQueueKind(queue);
  if (resolved === 'bull') return new BullQueueAdapter(queue as any);
  if (resolved === 'bullmq') {
    assertSupportedBullMQ(
      optionalPeer<{ version?: string }>('bullmq/package.json')?.version,
    );
    return new BullMQQueueAdapter(queue as any);
  }
  throw new TransactionalError(
    `Queue "${queueName}": unknown queue library "${String(kind)}"; use 'bull' or 'bullmq'.`,
  );
}
