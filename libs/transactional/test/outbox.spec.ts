import { getQueueToken } from '@nestjs/bull';
import { INestApplication, Injectable } from '@nestjs/common';
import type { Queue } from 'bull';
import { DataSource } from 'typeorm';
import {
  createOutboxMigration,
  InjectTransactionAwareQueue,
  Propagation,
  Transactional,
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { onMariaDb, uniqueName, testDataSourceOptions } from './support/env';
import {
  closeLibApp,
  createLibApp,
  findJob,
  jobCounts,
  waitFor,
} from './support/lib-app';
import { itBullOnly } from './support/queue-kind';
import { Order } from './support/order.entity';
import { makeOutboxRowsEligible } from './support/outbox-table';
import { dbQuery } from './support/db';

const DURABLE = uniqueName('outbox-durable');
const PLAIN = uniqueName('outbox-plain');
const TABLE = 'tx_spec_outbox';

type Payload = { orderId: string };

@Injectable()
class Orders {
  constructor(
    readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(DURABLE)
    readonly durable: TransactionAwareQueue<Payload>,
    @InjectTransactionAwareQueue(PLAIN)
    readonly plain: TransactionAwareQueue<Payload>,
  ) {}

  @Transactional()
  async create(
    label: string,
    options: { fail?: boolean; durable?: boolean } = {},
  ) {
    const order = await this.tx.getRepository(Order).save({ label });
    const id = await this.durable.add(
      { orderId: order.id },
      { durable: options.durable },
    );
    const outboxRows = await this.outboxIds();
    if (options.fail) throw new Error('business rule failed');
    return { id, orderId: order.id, outboxRows };
  }

  @Transactional()
  async createWithFailingNested() {
    const kept = await this.durable.add({ orderId: 'outer' });
    let dropped = '';
    await this.nested(async () => {
      dropped = await this.durable.add({ orderId: 'inner' });
      throw new Error('inner fails');
    }).catch(() => undefined);
    return { kept, dropped };
  }

  @Transactional({ propagation: Propagation.Nested })
  async nested(fn: () => Promise<void>) {
    await fn();
  }

  @Transactional()
  async addToPlain(durable?: boolean) {
    return this.plain.add({ orderId: 'plain' }, { durable });
  }

  async outboxIds(): Promise<string[]> {
    const rows = await dbQuery(
      this.tx.manager,
      `SELECT id FROM ${TABLE} ORDER BY created_at`,
    );
    return rows.map((r: { id: string }) => r.id);
  }
}

async function outboxRow(app: INestApplication, id: string) {
  const rows = await dbQuery(
    app.get(DataSource),
    `SELECT id, queue, dispatched_at FROM ${TABLE} WHERE id = $1`,
    [id],
  );
  return rows[0] as
    | { id: string; queue: string; dispatched_at: Date | null }
    | undefined;
}

/** Makes every pending row eligible for the relay now, as if its grace period had passed. */
async function expireGrace(app: INestApplication) {
  await makeOutboxRowsEligible(app.get(DataSource), TABLE);
}

describe('when a queue is durable (transactional outbox)', () => {
  let app: INestApplication;
  let orders: Orders;
  let bull: Queue;
  let outbox: TransactionalOutbox;

  beforeAll(async () => {
    const dataSource = new DataSource(testDataSourceOptions());
    await dataSource.initialize();
    await dbQuery(dataSource, `DROP TABLE IF EXISTS ${TABLE}`);
    const Migration = createOutboxMigration({ tableName: TABLE });
    const runner = dataSource.createQueryRunner();
    await new Migration().up(runner);
    await runner.release();
    await dataSource.destroy();

    app = await createLibApp({
      providers: [Orders],
      queues: [{ name: DURABLE, durable: true }, { name: PLAIN }],
      options: {
        outbox: {
          tableName: TABLE,
          relay: { enabled: false },
          markBatchDelayMs: 5,
        },
      },
    });
    orders = app.get(Orders);
    bull = app.get(getQueueToken(DURABLE), { strict: false });
    outbox = app.get(TransactionalOutbox);
  });

  afterAll(() => closeLibApp(app, [DURABLE, PLAIN]));

  it('should write the outbox row in the transaction and enqueue with jobId = row id', async () => {
    const { id, outboxRows } = await orders.create('durable');
    // NOTE: on Postgres a row of the root scope is held back and written in front of the COMMIT
    // (deferred-begin.spec.ts checks it is the same transaction); MariaDB writes it in add().
    if (onMariaDb) expect(outboxRows).toContain(id);
    else expect(outboxRows).not.toContain(id);
    expect(await outboxRow(app, id)).toBeDefined();
    const job = await waitFor(
      async () => (await findJob(bull, id)) !== null,
      'the job',
    ).then(() => findJob(bull, id));
    expect(job?.id).toBe(id);
    await waitFor(
      async () => (await outboxRow(app, id))?.dispatched_at != null,
      'the mark',
    );
    expect((await outboxRow(app, id))?.queue).toBe(DURABLE);
  });

  it('should leave neither a row nor a job when the transaction rolls back', async () => {
    const before = await outbox.stats();
    const jobsBefore = await jobCounts(bull);
    await expect(orders.create('rolled back', { fail: true })).rejects.toThrow(
      'business rule',
    );
    const after = await outbox.stats();
    expect(after.pending + after.dispatched).toBe(
      before.pending + before.dispatched,
    );
    expect(await jobCounts(bull)).toEqual(jobsBefore);
  });

  it('should drop the rows of a NESTED scope that rolls back and keep the outer ones', async () => {
    const { kept, dropped } = await orders.createWithFailingNested();
    expect(await outboxRow(app, dropped)).toBeUndefined();
    await waitFor(
      async () => (await findJob(bull, kept)) !== null,
      'the outer job',
    );
    expect(await findJob(bull, dropped)).toBeNull();
  });

  it('should let a call override the queue default both ways', async () => {
    const { id } = await orders.create('not durable', { durable: false });
    expect(await outboxRow(app, id)).toBeUndefined();
    await waitFor(async () => (await findJob(bull, id)) !== null, 'the job');
    const plainId = await orders.addToPlain(true);
    expect((await outboxRow(app, plainId))?.queue).toBe(PLAIN);
  });

  describe('when a durable job of a queue that is not durable by default loses its fast path', () => {
    it('should be relayed as well', async () => {
      const plain = app.get<Queue>(getQueueToken(PLAIN), { strict: false });
      const original = plain.add.bind(plain);
      plain.add = (async () => {
        throw new Error('simulated Redis outage');
      }) as any;
      let id: string;
      try {
        id = await orders.addToPlain(true);
      } finally {
        plain.add = original;
      }
      expect((await outboxRow(app, id))?.dispatched_at).toBeNull();
      await waitFor(
        async () => (await outbox.stats()).pending === 1,
        'the other marks',
      );
      await expireGrace(app);
      expect(await outbox.relayOnce()).toBe(1);
      expect((await findJob(plain, id))?.id).toBe(id);
    });
  });

  describe('when Redis lost its data and left an empty job hash under a pending row id', () => {
    itBullOnly('BullMQ moves a job to active in one script and leaves no husk')(
      'should remove the husk (once its lock is gone) and enqueue the real job',
      async () => {
        const original = bull.add.bind(bull);
        bull.add = (async () => {
          throw new Error('simulated Redis outage');
        }) as any;
        let id: string;
        try {
          ({ id } = await orders.create('husk'));
        } finally {
          bull.add = original;
        }
        await waitFor(
          async () => (await outbox.stats()).pending === 1,
          'the other marks',
        );
        // What Bull's moveToActive script leaves on a Redis that was emptied under it.
        await bull.client.hset(bull.toKey(id), 'processedOn', Date.now());
        await bull.client.set(
          `${bull.toKey(id)}:lock`,
          'another-worker',
          'PX',
          60_000,
        );
        await expireGrace(app);
        expect(await outbox.relayOnce()).toBe(0);
        expect((await outboxRow(app, id))?.dispatched_at).toBeNull();

        await bull.client.del(`${bull.toKey(id)}:lock`);
        expect(await outbox.relayOnce()).toBe(1);
        expect((await findJob(bull, id))?.data).toMatchObject({
          orderId: expect.any(String),
        });
        expect((await outboxRow(app, id))?.dispatched_at).not.toBeNull();
      },
    );
  });

  describe('when the fast path cannot reach Redis after the commit', () => {
    it('should keep the row pending and let the relay enqueue it, once', async () => {
      const original = bull.add.bind(bull);
      const failures: string[] = [];
      bull.add = (async (...args: any[]) => {
        failures.push(args[2]?.jobId);
        throw new Error('connect ECONNREFUSED (simulated Redis outage)');
      }) as any;
      let id: string;
      try {
        ({ id } = await orders.create('redis down'));
      } finally {
        bull.add = original;
      }
      expect(failures).toEqual([id]);
      expect(await findJob(bull, id)).toBeNull();
      expect((await outboxRow(app, id))?.dispatched_at).toBeNull();
      // Every other row is marked by the fast path (in batches, shortly after its enqueue).
      await waitFor(
        async () => (await outbox.stats()).pending === 1,
        'the other marks',
      );
      const stats = await outbox.stats();
      expect(stats.oldestPendingAgeMs).toEqual(expect.any(Number));

      await expireGrace(app);
      // Two relays poll at once (as two processes would): SKIP LOCKED gives each row to one.
      const [a, b] = await Promise.all([
        outbox.relayOnce(),
        outbox.relayOnce(),
      ]);
      expect(a + b).toBe(1);
      expect((await findJob(bull, id))?.data).toMatchObject({
        orderId: expect.any(String),
      });
      expect((await outboxRow(app, id))?.dispatched_at).not.toBeNull();
      expect(await outbox.relayOnce()).toBe(0);
      expect((await outbox.stats()).pending).toBe(0);
    });
  });
});
