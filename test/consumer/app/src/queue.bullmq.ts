/**
 * The BullMQ side of the consumer app (copied to `src/queue.ts` when QUEUE_KIND=bullmq): the
 * same exports as `queue.bull.ts`, on `bullmq` with `@nestjs/bullmq`.
 */
import { BullModule, getQueueToken } from '@nestjs/bullmq';
import { DynamicModule, INestApplication } from '@nestjs/common';
import { Queue, Worker } from 'bullmq';

/** The queue library this build of the app uses. */
export const QUEUE_KIND = 'bullmq';
/** A queue made transaction-aware. */
export const ORDERS_QUEUE = 'consumer-orders';
/** A durable queue (outbox + relay). */
export const DURABLE_QUEUE = 'consumer-durable';

let connection: { host: string; port: number; db: number; password?: string };
let keyPrefix = 'bull';
const workers = new Map<string, Worker>();

/** The queue library's modules: connection and the queues. */
export function queueModules(
  redisUrl: string,
  prefix: string,
): DynamicModule[] {
  const url = new URL(redisUrl);
  connection = {
    host: url.hostname,
    port: Number(url.port || 6379),
    db: Number(url.pathname.slice(1) || 0),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
  };
  keyPrefix = prefix;
  return [
    BullModule.forRoot({ connection, prefix }),
    BullModule.registerQueue({ name: ORDERS_QUEUE }, { name: DURABLE_QUEUE }),
  ];
}

/** The plain queue registered under `name`. */
function plainQueue(app: INestApplication, name: string): Queue {
  return app.get<Queue>(getQueueToken(name), { strict: false });
}

/** Starts a worker on queue `name` that hands each job's data to `handler`. */
export async function startWorker(
  _app: INestApplication,
  name: string,
  handler: (data: any) => Promise<void>,
): Promise<void> {
  const worker = new Worker(name, (job) => handler(job.data), {
    connection: { ...connection, maxRetriesPerRequest: null },
    prefix: keyPrefix,
    concurrency: 4,
  });
  workers.set(name, worker);
  await worker.waitUntilReady();
}

/** Whether Redis holds the job `id` of queue `name`. */
export async function jobExists(
  app: INestApplication,
  name: string,
  id: string,
): Promise<boolean> {
  return (await plainQueue(app, name).getJob(id)) != null;
}

/** A plain `add()` on queue `name`, not through the library. */
export async function plainAdd(
  app: INestApplication,
  name: string,
  data: unknown,
): Promise<void> {
  await plainQueue(app, name).add('plain', data);
}

/** Stops the queue's worker and removes the queue's keys from Redis. */
export async function removeQueue(
  app: INestApplication,
  name: string,
): Promise<void> {
  await workers.get(name)?.close();
  workers.delete(name);
  await plainQueue(app, name).obliterate({ force: true });
}
