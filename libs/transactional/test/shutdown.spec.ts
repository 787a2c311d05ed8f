import { INestApplication, Injectable } from '@nestjs/common';
import Bull from 'bull';
import {
  InjectTransactionAwareQueue,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
  TransactionRunner,
} from '../src';
import { testRedisUrl, uniqueName } from './support/env';
import { dbQuery, openDataSource } from './support/db';
import { closeLibApp, createLibApp, waitFor } from './support/lib-app';
import { Order } from './support/order.entity';

const QUEUE = uniqueName('shutdown');
const RECEIPTS = uniqueName('shutdown-receipts');

type ReceiptJob = { orderId: string };

@Injectable()
class SlowCommitter {
  readonly events: string[] = [];

  constructor(private readonly tx: TransactionHost) {}

  @Transactional()
  async create() {
    await this.tx.getRepository(Order).save({ label: 'shutdown' });
    await this.tx.afterCommit(async () => {
      this.events.push('after-commit started');
      await new Promise((resolve) => setTimeout(resolve, 300));
      this.events.push('after-commit finished');
    });
    this.events.push('committing');
  }
}

/** A promise the spec resolves when it wants. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

@Injectable()
class Checkout {
  /** Opened by `placeAfterGate` once its row is written; it then waits for `proceed`. */
  readonly entered = gate();
  readonly proceed = gate();

  constructor(
    private readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(RECEIPTS)
    private readonly receipts: TransactionAwareQueue<ReceiptJob>,
  ) {}

  /** Writes an order, waits for the spec, then queues its receipt through a joined scope. */
  @Transactional()
  async placeAfterGate(label: string) {
    const order = await this.tx.getRepository(Order).save({ label });
    this.entered.open();
    await this.proceed.opened;
    const jobId = await this.queueReceipt(order.id);
    return { orderId: order.id, jobId };
  }

  /** Writes an order and queues its receipt. */
  @Transactional()
  async place(label: string) {
    const order = await this.tx.getRepository(Order).save({ label });
    const jobId = await this.queueReceipt(order.id);
    return { orderId: order.id, jobId };
  }

  /** Joins the caller's transaction (REQUIRED), as a service called by a service does. */
  @Transactional()
  queueReceipt(orderId: string): Promise<string> {
    return this.receipts.add({ orderId });
  }
}

/** What Postgres and Redis hold once the app is closed, read through connections of the spec. */
async function afterClose(orderIds: string[], jobIds: string[]) {
  const db = await openDataSource();
  const queue = new Bull<ReceiptJob>(RECEIPTS, testRedisUrl());
  try {
    const rows: { id: string }[] = await dbQuery(
      db,
      'SELECT id FROM tx_spec_orders WHERE id = ANY($1::uuid[]) ORDER BY id',
      [orderIds],
    );
    const jobs = await Promise.all(jobIds.map((id) => queue.getJob(id)));
    return {
      // NOTE: sorted here: MariaDB's UUID type does not sort as its text does.
      committed: rows.map((r) => r.id).sort(),
      jobs: jobs.map((job) => job?.data ?? null),
    };
  } finally {
    await db.destroy();
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
  }
}

describe('when the application shuts down while after-commit work is in flight', () => {
  it('should let that work finish before the connections close', async () => {
    const app = await createLibApp({
      providers: [SlowCommitter],
      queues: [{ name: QUEUE }],
    });
    const service = app.get(SlowCommitter);
    const request = service.create();
    // Let the transaction reach its after-commit step, then close the app at once.
    while (!service.events.includes('after-commit started')) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    await closeLibApp(app, [QUEUE]);
    service.events.push('closed');
    await request;
    expect(service.events).toEqual([
      'committing',
      'after-commit started',
      'after-commit finished',
      'closed',
    ]);
  });
});

describe('when app.close() is called while a @Transactional method is in flight', () => {
  let app: INestApplication | undefined;
  let checkout: Checkout;
  let drainCalls: jest.SpyInstance;

  beforeEach(async () => {
    app = await createLibApp({
      providers: [Checkout],
      queues: [{ name: RECEIPTS }],
      listen: false,
    });
    checkout = app.get(Checkout);
    // Calls through: only records when the shutdown drain begins.
    drainCalls = jest.spyOn(app.get(TransactionRunner), 'drain');
  });

  afterEach(async () => {
    checkout.proceed.open();
    await app?.close().catch(() => undefined);
    app = undefined;
  });

  /** Closes the app while `placeAfterGate` holds its transaction open; resolves in the drain. */
  async function closeDuringTransaction() {
    const placing = checkout.placeAfterGate('in flight at close');
    await checkout.entered.opened;
    const closing = app!.close();
    await waitFor(() => drainCalls.mock.calls.length > 0, 'the drain');
    return { placing, closing };
  }

  it('should commit it, with the job it queues after close() began, and close only then', async () => {
    const { placing, closing } = await closeDuringTransaction();
    const order: string[] = [];
    void closing.then(() => order.push('closed'));
    checkout.proceed.open();
    const placed = await placing;
    order.push('committed');
    await closing;
    app = undefined;

    expect(order).toEqual(['committed', 'closed']);
    expect(await afterClose([placed.orderId], [placed.jobId])).toEqual({
      committed: [placed.orderId],
      jobs: [{ orderId: placed.orderId }],
    });
  });

  it('should run a @Transactional method that starts during the drain', async () => {
    const { placing, closing } = await closeDuringTransaction();
    const late = await checkout.place('started during the drain');
    checkout.proceed.open();
    const early = await placing;
    await closing;
    app = undefined;

    const ids = [early.orderId, late.orderId];
    expect(await afterClose(ids, [early.jobId, late.jobId])).toEqual({
      committed: [...ids].sort(),
      jobs: [{ orderId: early.orderId }, { orderId: late.orderId }],
    });
  });
});
