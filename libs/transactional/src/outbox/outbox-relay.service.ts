import { Logger } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { removeBullJobHusks } from '../bull-job-husks';
import type { QueueRegistry } from '../queue-registry';
import { withTimeout } from '../with-timeout';
import type { TransactionAwareQueue } from '../transaction-aware-queue';
import type { OutboxRowKey, OutboxStore } from './outbox-store';
import type { ResolvedOutboxOptions } from './outbox.options';

/** Longest a relay waits for Redis to take one batch before it gives the rows back. */
const ENQUEUE_TIMEOUT_MS = 5_000;

/** How many polls pass between two deletions of expired dispatched rows. */
const CLEANUP_EVERY = 60;

/**
 * Re-dispatches outbox rows the fast path did not mark within the grace period (the process
 * died, or Redis was down, between commit and enqueue). Rows are taken with
 * `FOR UPDATE SKIP LOCKED` and marked in the same transaction, so several relays on several
 * processes never hand one row to Bull twice; Bull also ignores a job id it still holds.
 * While Redis or Postgres fail it backs off exponentially and logs once per outage.
 */
export class OutboxRelay {
  private readonly logger = new Logger('OutboxRelay');
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = true;
  private failures = 0;
  private polls = 0;
  /** Rows this relay has enqueued since start-up. */
  relayed = 0;

  constructor(
    private readonly connectionName: string,
    private readonly manager: () => EntityManager,
    private readonly store: OutboxStore,
    private readonly registry: QueueRegistry,
    private readonly options: ResolvedOutboxOptions,
  ) {}

  /** Starts polling. */
  start(): void {
    this.stopped = false;
    this.schedule(this.options.relay.pollIntervalMs);
  }

  /** Stops polling; resolves when the poll in progress (if any) is over. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private schedule(delayMs: number) {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => (this.running = undefined));
    }, delayMs);
    this.timer.unref();
  }

  private async tick() {
    const { pollIntervalMs, maxBackoffMs, batchSize } = this.options.relay;
    try {
      const count = await this.pollOnce();
      if (this.failures > 0) {
        this.logger.log(
          `relay for "${this.connectionName}" recovered after ${this.failures} failed poll(s)`,
        );
      }
      this.failures = 0;
      this.schedule(count >= batchSize ? 0 : pollIntervalMs);
    } catch (error) {
      this.failures++;
      if (this.failures === 1) {
        this.logger.warn(
          `relay for "${this.connectionName}" cannot dispatch (${String(error)}); backing off`,
        );
      }
      this.schedule(
        Math.min(maxBackoffMs, pollIntervalMs * 2 ** this.failures),
      );
    }
  }

  /** One poll: dispatches what it finds; resolves with the number of rows dispatched. */
  async pollOnce(): Promise<number> {
    const queues = this.registry.byConnection().get(this.connectionName) ?? [];
    if (queues.length === 0) return 0;
    if (++this.polls % CLEANUP_EVERY === 0)
      await this.store.deleteExpired(this.manager());
    const byName = new Map(queues.map((q) => [q.name, q]));
    return this.manager().transaction(async (m) => {
      const rows = await this.store.lockPending(
        m,
        [...byName.keys()],
        this.options.relay.batchSize,
      );
      if (rows.length === 0) return 0;
      const groups = new Map<TransactionAwareQueue<any>, typeof rows>();
      for (const row of rows) {
        const queue = byName.get(row.queue)!;
        const group = groups.get(queue);
        if (group) group.push(row);
        else groups.set(queue, [row]);
      }
      const dispatched: OutboxRowKey[] = [];
      for (const [queue, group] of groups) {
        // A husk would swallow the re-add while the row is marked: the job would be lost.
        const { removed, locked } = await removeBullJobHusks(
          queue.queue,
          group.filter((row) => !row.opts.repeat).map((row) => row.id),
        );
        if (removed.length > 0)
          this.logger.warn(`removed empty job hashes ${removed.join(', ')}`);
        const ready = group.filter(
          (row) => row.opts.repeat || !locked.includes(row.id),
        );
        const jobs = ready.map((row) => ({
          name: row.jobName,
          data: row.data,
          // NOTE: the row id is the job id, unless opts has one (groupKey) or Bull derives it.
          opts: row.opts.repeat ? row.opts : { jobId: row.id, ...row.opts },
        }));
        const single = jobs.filter((job) => job.opts.repeat);
        const bulk = jobs.filter((job) => !job.opts.repeat);
        await withTimeout(
          Promise.all([
            bulk.length > 0 ? queue.queue.addBulk(bulk) : undefined,
            // NOTE: Bull's addBulk ignores `repeat`.
            ...single.map((job) =>
              queue.queue.add(job.name, job.data, job.opts),
            ),
          ]),
          ENQUEUE_TIMEOUT_MS,
          `Redis did not take the batch within ${ENQUEUE_TIMEOUT_MS} ms`,
        );
        dispatched.push(...ready.map(({ queue, id }) => ({ queue, id })));
      }
      await this.store.markDispatched(m, dispatched);
      this.relayed += dispatched.length;
      this.logger.log(
        `relayed ${dispatched.length} job(s) the fast path had not dispatched`,
      );
      return dispatched.length;
    });
  }
}
