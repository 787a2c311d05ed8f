/**
 * The Bull side of the consumer app (copied to `src/queue.ts` when QUEUE_KIND=bull). Another
 * queue library provides a `queue.<kind>.ts` with the same exports.
 */
import { BullModule, getQueueToken } from '@nestjs/bull';
import { DynamicModule, INestApplication } from '@nestjs/common';
import type { Queue } from 'bull';

/** The queue library this build of the app uses. */
export const QUEUE_KIND = 'bull';
/** A queue made transaction-aware. */
export const ORDERS_QUEUE = 'consumer-orders';
/** A durable queue (outbox + relay). */
export const DURABLE_QUEUE = 'consumer-durable';

/** The queue library's modules: connection and the queues. */
export function queueModules(
  redisUrl: string,
  prefix: string,
): DynamicModule[] {
  return [
    BullModule.forRoot({ url: redisUrl, prefix }),
    BullModule.registerQueue({ name: ORDERS_QUEUE }, { name: DURABLE_QUEUE }),
  ];
}

/** The plain queue registered under `name`. */
function plainQueue(app: INestApplication, name: string): Queue {
  return app.get<Queue>(getQueueToken(name), { strict: false });
}

/** Starts a worker on queue `name` that hands each job's data to `handler`. */
export async function startWorker(
  app: INestApplication,
  name: string,
  handler: (data: any) => Promise<void>,
): Promise<void> {
  void plainQueue(app, name).process(4, (job) => handler(job.data));
}

/** Whether Redis holds the job `id` of queue `name`. */
export async function jobExists(
  app: INestApplication,
  name: string,
  id: string,
): Promise<boolean> {
  return (await plainQueue(app, name).getJob(id)) !== null;
}

/** A plain `add()` on queue `name`, not through the library. */
export async function plainAdd(
  app: INestApplication,
  name: string,
  data: unknown,
): Promise<void> {
  await plainQueue(app, name).add(data);
}

/** Removes the queue's keys from Redis. */
export async function removeQueue(
  app: INestApplication,
  name: string,
): Promise<void> {
  await plainQueue(app, name).obliterate({ force: true });
}
