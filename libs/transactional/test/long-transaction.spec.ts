import { INestApplication, Injectable } from '@nestjs/common';
import type { Queue } from 'bull';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  Transactional,
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  waitFor,
} from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';
import { dbQuery } from './support/db';

const QUEUE = uniqueName('long-tx');
const TABLE = 'tx_spec_outbox_long_tx';
const GRACE_MS = 1_000;

type Payload = { n: number };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

@Injectable()
class Jobs {
  constructor(
    readonly host: TransactionHost,
    @InjectTransactionAwareQueue(QUEUE)
    readonly queue: TransactionAwareQueue<Payload>,
  ) {}

  /**
   * A transaction that adds a durable job (removed from Redis once processed) and stays open
   * `openMs` longer; after its commit, an after-commit step registered before the job holds
   * the job's fast path back for `fastPathAfterMs`.
   */
  @Transactional()
  async add(n: number, openMs: number, fastPathAfterMs: number) {
    await this.host.afterCommit(() => sleep(fastPathAfterMs), 'slow step');
    const id = await this.queue.add({ n }, { removeOnComplete: true });
    await sleep(openMs);
    return id;
  }
}

describe('when a durable job is added in a transaction that stays open longer than graceMs', () => {
  let app: INestApplication;
  let jobs: Jobs;
  let outbox: TransactionalOutbox;
  let bull: Queue<Payload>;
  /** Job ids, once per time a worker ran them. */
  const runs: string[] = [];
  let relaying = false;
  let relayLoop: Promise<void> | undefined;
  const row = async (id: string) =>
    (
      await dbQuery(
        app.get(DataSource),
        `SELECT dispatched_at, relay_attempts,
                extract(epoch FROM available_at - created_at) * 1000 AS eligible_after_ms,
                available_at
           FROM ${TABLE} WHERE id = $1`,
        [id],
      )
    )[0] as {
      dispatched_at: Date | null;
      relay_attempts: number;
      eligible_after_ms: string;
      available_at: Date;
    };
  /** The database's clock (read as `available_at` is). */
  const dbNow = async (): Promise<Date> =>
    (await dbQuery(app.get(DataSource), `SELECT clock_timestamp() AS now`))[0]
      .now;

  beforeAll(async () => {
    await createOutboxTable(TABLE);
    app = await createLibApp({
      providers: [Jobs],
      queues: [{ name: QUEUE, durable: true }],
      options: {
        outbox: {
          tableName: TABLE,
          markBatchDelayMs: 5,
          relay: { enabled: false, graceMs: GRACE_MS },
        },
      },
      listen: false,
    });
    jobs = app.get(Jobs);
    outbox = app.get(TransactionalOutbox);
    bull = bullQueue(app, QUEUE);
    void bull.process(async (job) => {
      runs.push(String(job.id));
    });
    // A relay as eager as one can be: it polls all the time.
    relaying = true;
    relayLoop = (async () => {
      while (relaying) {
        await outbox.relayOnce().catch(() => undefined);
        await sleep(10);
      }
    })();
  });

  afterAll(async () => {
    relaying = false;
    await relayLoop;
    await closeLibApp(app, [QUEUE]);
  });

  beforeEach(() => (runs.length = 0));

  it('should count the grace period from the commit, so the relay leaves the row to the fast path: the job runs once', async () => {
    const relayedBefore = outbox.relayed;
    const startedAt = await dbNow();

    const id = await jobs.add(1, GRACE_MS * 1.5, 300);

    await waitFor(async () => runs.includes(id), 'the job to run');
    await sleep(GRACE_MS * 1.5);
    expect(runs).toEqual([id]);
    expect(outbox.relayed).toBe(relayedBefore);
    const stored = await row(id);
    expect(stored.dispatched_at).not.toBeNull();
    expect(stored.relay_attempts).toBe(0);
    // Eligible grace after the commit (1.5 grace after the add), not after the add. On Postgres
    // the row is written with the COMMIT; on MariaDB an UPDATE before COMMIT postpones it.
    expect(
      stored.available_at.getTime() - startedAt.getTime(),
    ).toBeGreaterThanOrEqual(GRACE_MS * 2.5);
  });

  it('should leave the row to the relay alone when the fast path would start after the grace period: the job runs once', async () => {
    const before = { ...jobs.queue.stats };
    const relayedBefore = outbox.relayed;

    const id = await jobs.add(2, GRACE_MS * 1.5, GRACE_MS * 1.2);

    await waitFor(async () => runs.includes(id), 'the job to run');
    await sleep(GRACE_MS);
    expect(runs).toEqual([id]);
    expect(outbox.relayed).toBe(relayedBefore + 1);
    expect(jobs.queue.stats.leftToRelay).toBe(before.leftToRelay + 1);
    expect(jobs.queue.stats.enqueued).toBe(before.enqueued);
    expect((await row(id)).dispatched_at).not.toBeNull();
  });

  it('should write one statement per add for a short transaction: the row is eligible graceMs after its INSERT', async () => {
    const id = await jobs.add(3, 0, 0);

    await waitFor(async () => runs.includes(id), 'the job to run');
    const stored = await row(id);
    expect(Number(stored.eligible_after_ms)).toBeGreaterThanOrEqual(GRACE_MS);
    expect(Number(stored.eligible_after_ms)).toBeLessThan(GRACE_MS + 100);
  });
});
