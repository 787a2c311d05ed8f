import { INestApplication } from '@nestjs/common';
import fc from 'fast-check';
import { DataSource } from 'typeorm';
import type Redis from 'ioredis';
import {
  getTransactionAwareQueueToken,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  findJob,
} from './support/lib-app';
import { dbQuery } from './support/db';
import { Order } from './support/order.entity';
import { createOutboxTable } from './support/outbox-table';
import { itBullOnly } from './support/queue-kind';
import {
  OwnRedis,
  startOwnRedis,
} from '../../../test/faults/support/own-redis';

const COALESCED = uniqueName('coalesced');
const SEPARATE = uniqueName('separate');
const DURABLE = uniqueName('coalesced-durable');
/** A coalescing queue on a redis-server of this spec's own, which a test pauses. */
const PAUSABLE = uniqueName('coalesced-pausable');
const QUEUES = [COALESCED, SEPARATE, DURABLE, PAUSABLE];
const TABLE = 'tx_spec_outbox_coalesce';
const RUNS = Number(process.env.COALESCE_RUNS ?? 40);

/**
 * One job of a generated transaction: plain or durable; a poisoned (plain) one holds data the
 * queue library cannot serialise, refused at add() inside the transaction.
 */
interface GenJob {
  durable: boolean;
  poison: boolean;
}
/** A generated transaction: its jobs, and whether it rolls back at the end. */
interface GenTx {
  jobs: GenJob[];
  rollback: boolean;
}
const genJob = fc
  .record({ durable: fc.boolean(), poison: fc.integer({ min: 0, max: 9 }) })
  .map(({ durable, poison }) => ({
    durable,
    poison: !durable && poison === 0,
  }));
const genTx = fc.record<GenTx>({
  jobs: fc.array(genJob, { minLength: 1, maxLength: 3 }),
  rollback: fc.integer({ min: 0, max: 5 }).map((n) => n === 0),
});

type Payload = { n: number | bigint };

describe('coalesceEnqueues: jobs handed over while a call is in flight go together', () => {
  let app: INestApplication;
  let ownRedis: OwnRedis;
  const aware = (name: string) =>
    app.get<TransactionAwareQueue<Payload>>(
      getTransactionAwareQueueToken(name),
    );
  const host = () => app.get(TransactionHost);
  /** Counts the socket writes of the queue's Redis client while `work` runs. */
  async function writesDuring<T>(
    name: string,
    work: (writesSoFar: () => number) => Promise<T>,
  ): Promise<{ writes: number; result: T }> {
    const client = bullQueue(app, name).client as unknown as Redis;
    const stream = client.stream;
    const write = stream.write;
    let writes = 0;
    stream.write = function (this: typeof stream, ...args: any[]) {
      writes++;
      return (write as (...a: any[]) => boolean).apply(this, args);
    } as typeof stream.write;
    try {
      const result = await work(() => writes);
      return { writes, result };
    } finally {
      stream.write = write;
    }
  }
  const inQueue = async (name: string, ids: string[]) =>
    Promise.all(
      ids.map(async (id) => (await findJob(bullQueue(app, name), id)) !== null),
    );
  /** A transaction that writes an order row and adds one job per n. */
  const commit = (name: string, ns: number[]) =>
    host().withTransaction(async () => {
      const ids: string[] = [];
      for (const n of ns) {
        await host().manager.insert(Order, { label: `coalesce-${n}` });
        ids.push(await aware(name).add({ n }));
      }
      return ids;
    });

  beforeAll(async () => {
    await createOutboxTable(TABLE);
    ownRedis = await startOwnRedis();
    app = await createLibApp({
      queues: [
        { name: COALESCED, coalesceEnqueues: true },
        // NOTE: CLIENT PAUSE stops a whole server: on the shared one it would stall every other
        // test run using it.
        {
          name: PAUSABLE,
          coalesceEnqueues: true,
          bull: { url: ownRedis.url },
        },
        // NOTE: the default.
        { name: SEPARATE },
        { name: DURABLE, durable: true, coalesceEnqueues: true },
      ],
      options: {
        outbox: {
          tableName: TABLE,
          markBatchDelayMs: 5,
          // NOTE: the model asserts the fast path marks every committed row; on a loaded CI
          // machine a 300 ms fast path can pass its deadline and leave rows to the (disabled)
          // relay, so give it most of the grace period.
          fastPathTimeoutMs: 4_000,
          relay: { enabled: false },
        },
      },
      listen: false,
    });
    // NOTE: the first add loads the queue library's scripts into Redis (writes of their own).
    for (const name of QUEUES) {
      await aware(name).add({ n: -1 });
      await aware(name).addBulk([{ data: { n: -2 } }, { data: { n: -3 } }]);
    }
  });

  afterAll(async () => {
    await closeLibApp(app, QUEUES);
    await ownRedis?.stop();
  });

  it('should send the first add at once and the adds made meanwhile in one write, where each add alone is a write of its own', async () => {
    const ns = [1, 2, 3, 4, 5, 6];

    const together = await writesDuring(COALESCED, () =>
      Promise.all(ns.map((n) => aware(COALESCED).add({ n }))),
    );
    const apart = await writesDuring(SEPARATE, () =>
      Promise.all(ns.map((n) => aware(SEPARATE).add({ n }))),
    );

    expect(together.writes).toBe(2);
    expect(apart.writes).toBe(ns.length);
    expect(await inQueue(COALESCED, together.result)).toEqual(
      ns.map(() => true),
    );
    expect(await inQueue(SEPARATE, apart.result)).toEqual(ns.map(() => true));
  });

  it('should hand an add over at once when no call is in flight, not at the end of the turn', async () => {
    const { result } = await writesDuring(COALESCED, async (writesSoFar) => {
      // NOTE: scheduled before the add: it runs at the end of this turn, before anything the
      // add schedules for then.
      const endOfTurn = new Promise<number>((resolve) =>
        setImmediate(() => resolve(writesSoFar())),
      );
      const added = aware(COALESCED).add({ n: 42 });
      return { atEndOfTurn: await endOfTurn, id: await added };
    });

    expect(result.atEndOfTurn).toBe(1);
    expect(await inQueue(COALESCED, [result.id])).toEqual([true]);
  });

  it('should not hold an add made while a call is in flight until that call is answered', async () => {
    const client = bullQueue(app, PAUSABLE).client as unknown as Redis;
    const admin = client.duplicate();
    try {
      const { result } = await writesDuring(PAUSABLE, async (writesSoFar) => {
        // NOTE: Redis holds every write command for 300 ms: the first add stays unanswered.
        await admin.call('CLIENT', 'PAUSE', '300', 'WRITE');
        const first = aware(PAUSABLE).add({ n: 50 });
        await new Promise((resolve) => setTimeout(resolve, 20));
        const second = aware(PAUSABLE).add({ n: 51 });
        await new Promise((resolve) => setTimeout(resolve, 50));
        const whilePaused = writesSoFar();
        return { whilePaused, ids: await Promise.all([first, second]) };
      });

      expect(result.whilePaused).toBe(2);
      expect(await inQueue(PAUSABLE, result.ids)).toEqual([true, true]);
    } finally {
      await admin.call('CLIENT', 'UNPAUSE');
      await admin.quit();
    }
  });

  it('should enqueue every job of transactions committing concurrently, whichever turns they share', async () => {
    const failedBefore = aware(COALESCED).stats.failed;

    const ids = (
      await Promise.all(
        Array.from({ length: 12 }, (_, k) => commit(COALESCED, [k, k + 100])),
      )
    ).flat();

    expect(new Set(ids).size).toBe(24);
    expect(await inQueue(COALESCED, ids)).toEqual(ids.map(() => true));
    expect(aware(COALESCED).stats.failed).toBe(failedBefore);
  });

  it('should fail only the caller whose job the queue refuses, and enqueue the others of its turn', async () => {
    // NOTE: a BigInt passes add() in a plain queue and makes the queue library's JSON throw.
    // NOTE: the first add goes at once; the three after it are handed over together.
    const outcomes = await Promise.allSettled([
      aware(COALESCED).add({ n: 0 }, { jobId: uniqueName('lead') }),
      aware(COALESCED).add({ n: 1 }, { jobId: uniqueName('good-1') }),
      aware(COALESCED).add({ n: 10n }, { jobId: uniqueName('poison') }),
      aware(COALESCED).add({ n: 2 }, { jobId: uniqueName('good-2') }),
    ]);

    expect(outcomes.map((o) => o.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
    ]);
    expect(String((outcomes[2] as PromiseRejectedResult).reason)).toMatch(
      /BigInt/,
    );
    const good = [outcomes[1], outcomes[3]].map(
      (o) => (o as PromiseFulfilledResult<string>).value,
    );
    expect(await inQueue(COALESCED, good)).toEqual([true, true]);
  });

  itBullOnly("Bull's addBulk drops the errors of its MULTI's replies")(
    'should let the other transactions of the turn enqueue when one transaction holds a job Redis refuses',
    async () => {
      const failedBefore = aware(COALESCED).stats.failed;
      const queue = bullQueue(app, COALESCED);
      const client = queue.client as unknown as Redis;
      const delayedKey = (
        queue as unknown as { toKey(k: string): string }
      ).toKey('delayed');
      // NOTE: a delayed job's script adds it to this key; as a string, Redis refuses that.
      await client.set(delayedKey, 'not a sorted set');
      try {
        const [, first, poisoned, last] = await Promise.all([
          commit(COALESCED, [6]),
          commit(COALESCED, [7]),
          host().withTransaction(async () => {
            await host().manager.insert(Order, { label: 'coalesce-poison' });
            return [await aware(COALESCED).add({ n: 11 }, { delay: 60_000 })];
          }),
          commit(COALESCED, [8]),
        ]);

        expect(await inQueue(COALESCED, [...first, ...last])).toEqual([
          true,
          true,
        ]);
        // NOTE: the refused job's hash may exist (its script failed part way): counted failed.
        expect(poisoned).toHaveLength(1);
        expect(aware(COALESCED).stats.failed).toBe(failedBefore + 1);
      } finally {
        await client.del(delayedKey);
      }
    },
  );

  itBullOnly("Bull's addBulk drops the errors of its MULTI's replies")(
    'should fail the caller of a job whose script Redis refuses inside a combined add, and only it',
    async () => {
      const queue = bullQueue(app, COALESCED);
      const client = queue.client as unknown as Redis;
      const delayedKey = (
        queue as unknown as { toKey(k: string): string }
      ).toKey('delayed');
      // NOTE: a delayed job's script adds it to this key; as a string, Redis refuses that.
      await client.set(delayedKey, 'not a sorted set');
      try {
        // NOTE: the first add goes at once; the three after it are handed over together.
        const outcomes = await Promise.allSettled([
          aware(COALESCED).add({ n: 0 }),
          aware(COALESCED).add({ n: 1 }),
          aware(COALESCED).add({ n: 2 }, { delay: 60_000 }),
          aware(COALESCED).add({ n: 3 }),
        ]);

        expect(outcomes.map((o) => o.status)).toEqual([
          'fulfilled',
          'fulfilled',
          'rejected',
          'fulfilled',
        ]);
        expect(String((outcomes[2] as PromiseRejectedResult).reason)).toMatch(
          /Redis refused 1 of 3 job\(s\)/,
        );
        const [first, third] = [outcomes[1], outcomes[3]].map(
          (o) => (o as PromiseFulfilledResult<string>).value,
        );
        expect(await inQueue(COALESCED, [first, third])).toEqual([true, true]);
      } finally {
        await client.del(delayedKey);
      }
    },
  );

  it('should enqueue, whatever transactions commit together, exactly the jobs of those that committed (a job the queue would refuse rolls its transaction back)', async () => {
    const property = fc.asyncProperty(
      fc.array(genTx, { minLength: 1, maxLength: 10 }),
      async (txs) => {
        const failedBefore = aware(COALESCED).stats.failed;
        const leftBefore = aware(DURABLE).stats.leftToRelay;
        const added: string[][] = txs.map(() => []);
        const outcomes = await Promise.allSettled(
          txs.map((tx, t) =>
            host().withTransaction(async () => {
              await host().manager.insert(Order, {
                label: `coalesce-model-${t}`,
              });
              for (const job of tx.jobs) {
                const queue = aware(job.durable ? DURABLE : COALESCED);
                // NOTE: refused at add(), inside the transaction: it rolls back.
                added[t].push(await queue.add({ n: job.poison ? 1n : t }));
              }
              if (tx.rollback) throw new Error('rolled back on purpose');
            }),
          ),
        );

        for (const [t, tx] of txs.entries()) {
          const poisoned = tx.jobs.some((job) => job.poison);
          expect(outcomes[t].status).toBe(
            tx.rollback || poisoned ? 'rejected' : 'fulfilled',
          );
          if (poisoned && !tx.rollback) {
            expect(
              String((outcomes[t] as PromiseRejectedResult).reason),
            ).toMatch(/cannot be written as JSON/);
          }
          // The jobs added before a refused one roll back with it; none after it was added.
          const found = await Promise.all(
            added[t].map(async (id, j) =>
              tx.jobs[j].durable
                ? (await findJob(bullQueue(app, DURABLE), id)) !== null
                : (await findJob(bullQueue(app, COALESCED), id)) !== null,
            ),
          );
          expect({ t, found }).toEqual({
            t,
            found: added[t].map(() => !tx.rollback && !poisoned),
          });
        }
        expect(aware(COALESCED).stats.failed - failedBefore).toBe(0);
        expect(aware(DURABLE).stats.leftToRelay - leftBefore).toBe(0);
        // The fast path marked every committed durable row (none is left to the relay).
        const durableIds = txs.flatMap((tx, t) =>
          tx.rollback || tx.jobs.some((job) => job.poison)
            ? []
            : tx.jobs.flatMap((job, j) => (job.durable ? [added[t][j]] : [])),
        );
        const deadline = Date.now() + 5_000;
        let pending: unknown[] = [];
        do {
          pending = await dbQuery(
            app.get(DataSource),
            `SELECT id FROM ${TABLE} WHERE dispatched_at IS NULL AND id = ANY($1::text[])`,
            [durableIds],
          );
          if (pending.length > 0) await new Promise((r) => setTimeout(r, 20));
        } while (pending.length > 0 && Date.now() < deadline);
        expect(pending).toEqual([]);
      },
    );
    await fc.assert(property, {
      numRuns: RUNS,
      seed: process.env.MODEL_SEED ? Number(process.env.MODEL_SEED) : undefined,
      endOnFailure: true,
    });
  });
});
