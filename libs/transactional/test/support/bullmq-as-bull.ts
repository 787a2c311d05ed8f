import type { Queue as BullQueue } from 'bull';
import { Queue, Worker } from 'bullmq';

/** The name Bull gives a job added without one. */
const DEFAULT_JOB_NAME = '__default__';

/** Workers started through facades, closed by `closeFacadeWorkers`. */
const workers = new WeakMap<Queue, Worker[]>();

/** The ioredis client of a BullMQ queue (BullMQ 6: `backend.connection`; 5: `connection`). */
export function bullmqClient(queue: Queue): any {
  const owner = queue as any;
  return (owner.backend?.connection ?? owner.connection)._client;
}

/**
 * A BullMQ `Queue` seen through the part of Bull's `Queue` API the library specs use, so that
 * one spec runs on both (`LIB_QUEUE`): `getJob` answers `null` for a missing job,
 * `getJobCounts()` has Bull's six states, `add(data, opts)` and unnamed bulk jobs are named
 * `'__default__'`, `process()` starts a `Worker`, `empty()` drains, `isReady()` waits for the
 * connection, `client` is the ioredis client. Anything else is BullMQ's own. A method a spec
 * replaces (`queue.add = ...`) is replaced on the BullMQ queue itself, which is what the library
 * calls.
 */
export function bullmqAsBull<T>(queue: Queue): BullQueue<T> {
  const facade: Record<string, unknown> = {
    getJob: async (id: string) => (await queue.getJob(id)) ?? null,
    getJobCounts: async () => {
      // NOTE: BullMQ 6 has no 'paused' state (a paused queue's jobs wait); 5 has.
      const counts: Record<string, number> = await queue.getJobCounts(
        ...([
          'active',
          'completed',
          'delayed',
          'failed',
          'paused',
          'waiting',
          'prioritized',
          'waiting-children',
        ] as any[]),
      );
      return {
        active: counts.active,
        completed: counts.completed,
        delayed: counts.delayed,
        failed: counts.failed,
        paused: counts.paused ?? 0,
        waiting:
          counts.waiting + counts.prioritized + counts['waiting-children'],
      };
    },
    // NOTE: the class's methods, not `queue.add`: a spec that saved the facade's `add` and
    // put it back on the queue would otherwise make it call itself.
    add: (...args: unknown[]) =>
      typeof args[0] === 'string'
        ? Queue.prototype.add.call(queue, args[0], args[1], args[2] as object)
        : Queue.prototype.add.call(
            queue,
            DEFAULT_JOB_NAME,
            args[0],
            args[1] as object,
          ),
    addBulk: (jobs: { name?: string; data: unknown; opts?: object }[]) =>
      Queue.prototype.addBulk.call(
        queue,
        jobs.map((job) => ({ ...job, name: job.name ?? DEFAULT_JOB_NAME })),
      ),
    process: (...args: unknown[]) => {
      const handler = args[args.length - 1] as (job: unknown) => unknown;
      const concurrency = typeof args[0] === 'number' ? args[0] : 1;
      const worker = new Worker(queue.name, async (job) => handler(job), {
        connection: (queue as any).opts.connection,
        prefix: (queue as any).opts.prefix,
        concurrency,
      });
      workers.set(queue, [...(workers.get(queue) ?? []), worker]);
      return new Promise(() => undefined);
    },
    empty: () => queue.drain(true),
    isReady: async () => {
      await queue.waitUntilReady();
      return facade;
    },
  };
  return new Proxy(queue, {
    get(target, property, receiver) {
      if (property === 'client') return bullmqClient(target);
      if (typeof property === 'string' && property in facade) {
        // NOTE: a method the spec replaced on the queue wins over the facade's.
        if (Object.prototype.hasOwnProperty.call(target, property)) {
          return Reflect.get(target, property, target);
        }
        return facade[property];
      }
      const value = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
    set(target, property, value) {
      return Reflect.set(target, property, value, target);
    },
  }) as unknown as BullQueue<T>;
}

/** Closes the workers `process()` started on these queues. */
export async function closeFacadeWorkers(queues: Queue[]): Promise<void> {
  for (const queue of queues) {
    for (const worker of workers.get(queue) ?? []) await worker.close(true);
    workers.delete(queue);
  }
}
