import { Logger } from '@nestjs/common';
import { performance } from 'perf_hooks';
import type { EntityManager } from 'typeorm';
import {
  AdapterJob,
  PartialEnqueueError,
  QueueAdapter,
} from '../adapters/queue-adapter';
import type { QueueRegistry } from '../queue-registry';
import { assertRedisReady } from '../redis-readiness';
import { errorText } from '../transaction-runner';
import { withTimeout } from '../with-timeout';
import type { TransactionAwareQueue } from '../transaction-aware-queue';
import type { ClaimedOutboxRow, OutboxStore } from './outbox-store';
import type { ResolvedOutboxOptions } from './outbox.options';

/** Counters of the outbox relays of a process, for metrics. */
export interface OutboxRelayStats {
  /** Polls run (each claims up to `batchSize` eligible rows). */
  polls: number;
  /** Polls that claimed rows: batches the relay tried to dispatch. */
  batches: number;
  /** Rows enqueued by the relay (the fast path had not dispatched them). */
  relayed: number;
  /** Polls that failed (Postgres or Redis unreachable, or no claimed row could be sent). */
  failedPolls: number;
}

/**
 * A relay stops calling Redis for its claimed rows this long (at most a fifth of the lease)
 * before their lease ends, so that it marks them while it still owns them.
 */
const LEASE_MARGIN_MS = 1_000;

/** How many polls pass between two deletions of expired dispatched rows. */
const CLEANUP_EVERY = 60;

/** What `dispatch` did with one queue's claimed rows. */
interface Dispatched {
  sent: ClaimedOutboxRow[];
  held: ClaimedOutboxRow[];
  /**
   * Rows that were not sent, with why. `unreadable`: the row itself cannot become a job (its
   * stored data or options), found before Redis was asked.
   */
  failed: { rows: ClaimedOutboxRow[]; error: unknown; unreadable?: true }[];
}

/**
 * A hand-over to Redis the relay stopped waiting for (too slow): its jobs may still reach Redis.
 * `late` settles with what it did once it answers.
 */
class HandOverAbandoned extends Error {
  constructor(
    message: string,
    readonly late: Promise<Dispatched>,
  ) {
    super(message);
  }
}

/**
 * Re-dispatches outbox rows the fast path did not mark within the grace period (the process
 * died, or Redis was down, between commit and enqueue). No transaction stays open across a
 * Redis call: one short statement claims eligible rows for `leaseMs` (`FOR UPDATE SKIP LOCKED`
 * inside it, so several relays on several processes never claim one row while its lease
 * holds), then each Redis call is bounded by `redisTimeoutMs` and by the lease, then another
 * short statement marks the rows dispatched. A failed attempt is recorded on the rows
 * (`relay_attempts`, `last_error`) and makes each wait an exponential backoff. While Redis or
 * Postgres fail the relay itself backs off too, and logs once per outage.
 */
export class OutboxRelay {
  private readonly logger = new Logger('OutboxRelay');
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = true;
  private failures = 0;
  /**
   * Abandoned hand-overs whose rows are settled once Redis answers (see `settleLate`), each with
   * the moment (`performance.now()`) its rows' lease ends.
   */
  private readonly late = new Map<Promise<void>, number>();
  private polls = 0;
  /** Counters since start-up. */
  readonly stats: OutboxRelayStats = {
    polls: 0,
    batches: 0,
    relayed: 0,
    failedPolls: 0,
  };

  /** Rows this relay has enqueued since start-up. */
  get relayed(): number {
    return this.stats.relayed;
  }

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

  /**
   * Stops polling; resolves when the poll in progress (if any) is over, and the rows of hand-overs
   * it stopped waiting for are settled, or their lease has ended (until then their jobs may still
   * land in Redis, and only this relay can mark them: once the application has closed its
   * DataSource, a late reply could no longer be recorded and the next relay would enqueue the
   * jobs again, although Redis answered within the lease).
   */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    if (this.late.size > 0) {
      const leaseLeft = Math.max(...this.late.values()) - performance.now();
      await withTimeout(
        Promise.all([...this.late.keys()]),
        Math.max(this.options.relay.redisTimeoutMs, Math.ceil(leaseLeft)),
      ).catch(() => undefined);
    }
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
      const { claimed } = await this.pollCounted();
      if (this.failures > 0) {
        this.logger.log(
          `relay for "${this.connectionName}" recovered after ${this.failures} failed poll(s)`,
        );
      }
      this.failures = 0;
      // NOTE: a full batch polls again at once, also when the queue refused some of its rows.
      this.schedule(claimed >= batchSize ? 0 : pollIntervalMs);
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

  /**
   * One poll: claims eligible rows, dispatches them, marks them; resolves with the number of
   * rows dispatched. Rejects (after recording the attempt on the rows) when rows were claimed
   * and none could be dispatched.
   */
  async pollOnce(): Promise<number> {
    return (await this.pollCounted()).dispatched;
  }

  /** `pollOnce`, also saying how many rows it claimed. */
  private async pollCounted(): Promise<{
    dispatched: number;
    claimed: number;
  }> {
    try {
      return await this.poll();
    } catch (error) {
      this.stats.failedPolls++;
      throw error;
    }
  }

  private async poll(): Promise<{ dispatched: number; claimed: number }> {
    this.stats.polls++;
    const queues = this.registry.byConnection().get(this.connectionName) ?? [];
    if (queues.length === 0) return { dispatched: 0, claimed: 0 };
    const manager = this.manager();
    if (++this.polls % CLEANUP_EVERY === 0)
      await this.store.deleteExpired(manager);
    const byName = new Map(queues.map((q) => [q.name, q]));
    // NOTE: counted from before the claim, so that it ends before the lease does.
    const { leaseMs } = this.options.relay;
    const deadline =
      performance.now() + leaseMs - Math.min(LEASE_MARGIN_MS, leaseMs / 5);
    const rows = await this.store.claim(
      manager,
      [...byName.keys()],
      this.options.relay.batchSize,
    );
    if (rows.length === 0) return { dispatched: 0, claimed: 0 };
    this.stats.batches++;
    const groups = new Map<TransactionAwareQueue<any>, ClaimedOutboxRow[]>();
    for (const row of rows) {
      const queue = byName.get(row.queue)!;
      const group = groups.get(queue);
      if (group) group.push(row);
      else groups.set(queue, [row]);
    }
    let dispatched = 0;
    let failure: unknown;
    for (const [queue, group] of groups) {
      let outcome: Dispatched;
      try {
        outcome = await this.dispatch(queue, group, deadline);
      } catch (error) {
        failure ??= error;
        if (error instanceof HandOverAbandoned) {
          // NOTE: its jobs may still reach Redis: the rows keep their lease (no other relay
          // takes them meanwhile) and are settled once Redis answers. A backoff here made them
          // eligible again at once, and a job that did land, ran and was removed ran again.
          this.settleLate(
            manager,
            error.late,
            deadline + Math.min(LEASE_MARGIN_MS, leaseMs / 5),
          );
          continue;
        }
        await this.store.noteFailure(manager, group, errorText(error));
        continue;
      }
      // NOTE: a row that cannot become a job backs off on its own (see `settle`) and is no
      // failure of the poll: the whole relay backed off then, holding every good row behind it.
      // Jobs Redis refused count: with nothing sent, Redis itself may be refusing (memory full).
      failure ??= outcome.failed.find((f) => !f.unreadable)?.error;
      dispatched += await this.settle(manager, outcome);
    }
    this.stats.relayed += dispatched;
    if (dispatched > 0) {
      this.logger.log(
        `relayed ${dispatched} job(s) the fast path had not dispatched`,
      );
    }
    if (failure !== undefined && dispatched === 0) throw failure;
    return { dispatched, claimed: rows.length };
  }

  /**
   * Marks the rows sent, releases those held back and records the failure of those the queue
   * refused (only they back off: a poison row never holds the others); resolves with how many
   * were sent. Each statement changes a row only while this relay's lease on it holds.
   */
  private async settle(
    manager: EntityManager,
    outcome: Dispatched,
  ): Promise<number> {
    await this.store.markRelayed(manager, outcome.sent);
    await this.store.release(manager, outcome.held);
    for (const { rows: refused, error } of outcome.failed) {
      await this.store.noteFailure(manager, refused, errorText(error));
    }
    return outcome.sent.length;
  }

  /**
   * Settles the rows of a hand-over the relay stopped waiting for, once Redis answers: marked if
   * their jobs landed, their failure recorded if not. A lease that ran out meanwhile (the call
   * took longer than it) leaves them to the relay that claims them next.
   */
  private settleLate(
    manager: EntityManager,
    late: Promise<Dispatched>,
    leaseEnd: number,
  ) {
    const settled: Promise<void> = late
      .then(async (outcome) => {
        const sent = await this.settle(manager, outcome);
        this.stats.relayed += sent;
        if (sent > 0) {
          this.logger.log(
            `relayed ${sent} job(s) whose hand-over Redis answered late`,
          );
        }
      })
      .catch((error: unknown) => {
        this.logger.warn(
          `could not settle the outbox rows of a late hand-over: ${errorText(error)}; ` +
            `they are the relay's again when their lease ends`,
        );
      })
      .finally(() => this.late.delete(settled));
    this.late.set(settled, leaseEnd);
  }

  /**
   * Hands one queue's claimed rows to Bull (or BullMQ, through the queue's adapter), each Redis
   * call bounded; resolves with the rows sent, those held back (a job husk still locked by a
   * worker) and those the queue refused (a job it cannot take: see `isolateRefusals`), unless
   * the whole hand-over failed (Redis gone or too slow): then it rejects.
   */
  private async dispatch(
    queue: TransactionAwareQueue<any>,
    rows: ClaimedOutboxRow[],
    deadline: number,
  ): Promise<Dispatched> {
    const adapter = queue.adapter;
    assertRedisReady(adapter.client(), queue.name);
    const failed: Dispatched['failed'] = [];
    // NOTE: a row whose job the queue would refuse (written by an earlier version, or by hand)
    // fails alone, here or when it is handed over, and never holds the others back.
    const idOf = new Map<ClaimedOutboxRow, string>();
    const usable: ClaimedOutboxRow[] = [];
    for (const row of rows) {
      try {
        if (row.invalid !== undefined) throw new Error(row.invalid);
        if (!row.opts.repeat) idOf.set(row, bullJobId(adapter, row));
        usable.push(row);
      } catch (error) {
        failed.push({ rows: [row], error, unreadable: true });
      }
    }
    // A husk would swallow the re-add while the row is marked: the job would be lost.
    const { removed, locked } = await this.bounded(
      () => adapter.removeHusks([...new Set(idOf.values())]),
      deadline,
      'checking for job husks',
    );
    if (removed.length > 0)
      this.logger.warn(`removed empty job hashes ${removed.join(', ')}`);
    const held = usable.filter((row) => {
      const id = idOf.get(row);
      return id !== undefined && locked.includes(id);
    });
    const rowOf = new Map<AdapterJob, ClaimedOutboxRow>();
    for (const row of usable) {
      if (held.includes(row)) continue;
      rowOf.set(
        {
          name: row.jobName,
          data: row.data,
          // NOTE: rows written before jobId was stored in opts carry it as their id.
          opts: row.opts.repeat ? row.opts : { jobId: row.id, ...row.opts },
          repeat: Boolean(row.opts.repeat),
        },
        row,
      );
    }
    const jobs = [...rowOf.keys()];
    const single = jobs.filter((job) => job.repeat);
    const bulk = jobs.filter((job) => !job.repeat);
    const refusedOf = (part: AdapterJob[]) => (error: unknown) => ({
      jobs:
        error instanceof PartialEnqueueError
          ? part.filter((job) => error.failed.has(job))
          : part,
      error,
    });
    // NOTE: never rejects: each call's failure is an outcome.
    const handOver = () =>
      Promise.all([
        bulk.length > 0
          ? Promise.resolve()
              .then(() => adapter.enqueue(bulk, true))
              .then(() => undefined, refusedOf(bulk))
          : undefined,
        // NOTE: Bull's addBulk ignores `repeat`.
        ...single.map((job) =>
          Promise.resolve()
            .then(() => adapter.enqueue([job]))
            .then(() => undefined, refusedOf([job])),
        ),
      ]).then((outcomes): Dispatched => {
        const refusedJobs = new Set<AdapterJob>();
        for (const outcome of outcomes) {
          if (!outcome) continue;
          for (const job of outcome.jobs) refusedJobs.add(job);
          failed.push({
            rows: outcome.jobs.map((job) => rowOf.get(job)!),
            error: outcome.error,
          });
        }
        const sent = jobs
          .filter((job) => !refusedJobs.has(job))
          .map((job) => rowOf.get(job)!);
        return { sent, held, failed };
      });
    let started: Promise<Dispatched> | undefined;
    try {
      return await this.bounded(
        () => (started = handOver()),
        deadline,
        'taking the jobs',
      );
    } catch (error) {
      if (started) throw new HandOverAbandoned(errorText(error), started);
      throw error;
    }
  }

  /** Starts `work` unless the lease has run out, and waits at most `redisTimeoutMs` for it. */
  private bounded<T>(
    work: () => Promise<T>,
    deadline: number,
    what: string,
  ): Promise<T> {
    const ms = Math.floor(
      Math.min(this.options.relay.redisTimeoutMs, deadline - performance.now()),
    );
    if (ms <= 0) {
      return Promise.reject(
        new Error(`the relay's lease ran out before ${what}`),
      );
    }
    return withTimeout(
      work(),
      ms,
      `Redis did not answer within ${ms} ms (${what})`,
    );
  }
}

/** The id Bull (or BullMQ) gives the job of a (non-repeatable) row. */
function bullJobId(adapter: QueueAdapter, row: ClaimedOutboxRow): string {
  // NOTE: rows written before jobId was stored in opts carry it as their id.
  return row.opts.jobId === undefined
    ? row.id
    : adapter.identify(row.jobName, row.data, row.opts).id;
}
