import {
  Body,
  ConflictException,
  Controller,
  INestApplication,
  Post,
} from '@nestjs/common';
import type { Queue } from 'bull';
import request from 'supertest';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { Order } from './support/order.entity';
import { onMariaDb, uniqueName } from './support/env';
import {
  NO_JOBS,
  bullQueue,
  closeLibApp,
  createLibApp,
  waitFor,
} from './support/lib-app';
import { dbQuery, transactionId, Queryable } from './support/db';

const QUEUE = uniqueName('isolation');
const REQUESTS = 100;
/** Every FAIL_EVERY-th request rolls back after queueing its job. */
const FAIL_EVERY = 5;

type OrderJob = { orderId: string; marker: string };
type CreateBody = { marker: string; fail: boolean };

/**
 * The id of the current transaction: on Postgres its 32-bit id, as the rows it writes carry it in
 * `xmin`; on MariaDB its InnoDB transaction id.
 */
async function xid(manager: Queryable): Promise<string> {
  if (onMariaDb) return transactionId(manager);
  const [row] = await manager.query(
    `SELECT (txid_current() % 4294967296)::text AS xid`,
  );
  return row.xid;
}

const pause = () =>
  new Promise((resolve) => setTimeout(resolve, Math.random() * 5));

@Controller('orders')
class OrdersController {
  constructor(
    private readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(QUEUE)
    private readonly queue: TransactionAwareQueue<OrderJob>,
  ) {}

  @Post()
  @Transactional()
  async create(@Body() { marker, fail }: CreateBody) {
    const xidBefore = await xid(this.tx.manager);
    const order = await this.tx.getRepository(Order).save({ label: marker });
    // Interleave with the other requests between every step.
    await dbQuery(this.tx.manager, 'SELECT pg_sleep($1)', [
      Math.random() / 100,
    ]);
    const jobId = await this.queue.add({ orderId: order.id, marker });
    await pause();
    const xidAfter = await xid(this.tx.manager);
    const readBack = await this.tx.getRepository(Order).findOneBy({
      id: order.id,
    });
    if (fail) throw new ConflictException(`rolled back ${marker}`);
    return {
      id: order.id,
      jobId,
      xids: [xidBefore, xidAfter],
      readBack: readBack?.label,
    };
  }
}

describe('when many requests run concurrently', () => {
  let app: INestApplication;
  let queue: Queue<OrderJob>;
  /** What the processor found for each job, by job id. */
  const processed = new Map<string, OrderJob & { foundLabel: string | null }>();

  beforeAll(async () => {
    app = await createLibApp({
      controllers: [OrdersController],
      queues: [{ name: QUEUE }],
      poolSize: 30,
    });
    const dataSource = app.get(DataSource);
    queue = bullQueue(app, QUEUE);
    void queue.process(8, async (job) => {
      const row = await dataSource
        .getRepository(Order)
        .findOneBy({ id: job.data.orderId });
      processed.set(String(job.id), {
        ...job.data,
        foundLabel: row?.label ?? null,
      });
    });
  });

  afterAll(() => closeLibApp(app, [QUEUE]));

  /** Sends REQUESTS requests at once; those `fails(i)` picks roll back after queueing. */
  async function runConcurrently(fails: (i: number) => boolean) {
    const run = uniqueName('isolation-run');
    const bodies: CreateBody[] = Array.from({ length: REQUESTS }, (_, i) => ({
      marker: `${run} #${i}`,
      fail: fails(i),
    }));
    const url = await app.getUrl();

    const responses = await Promise.all(
      bodies.map((body) => request(url).post('/orders').send(body)),
    );

    const committed = bodies.filter((body) => !body.fail);
    const ofThisRun = () =>
      [...processed.values()].filter((job) => job.marker.startsWith(run));
    await waitFor(
      () => ofThisRun().length >= committed.length,
      'every committed job to be processed',
    );
    const dataSource = app.get(DataSource);
    for (const [i, body] of bodies.entries()) {
      const res = responses[i];
      if (body.fail) {
        expect([res.status, res.body.message]).toEqual([
          409,
          `rolled back ${body.marker}`,
        ]);
        expect(
          await dataSource.getRepository(Order).countBy({ label: body.marker }),
        ).toBe(0);
        continue;
      }
      expect(res.status).toBe(201);
      const { id, jobId, xids, readBack } = res.body;
      expect(readBack).toBe(body.marker);
      expect(xids[1]).toBe(xids[0]);
      // The row was written by this request's transaction, not by another one's (Postgres:
      // its xmin; MariaDB keeps no such trace of a row's writer).
      if (!onMariaDb) {
        const [row] = await dbQuery(
          dataSource,
          'SELECT label, xmin::text AS xmin FROM tx_spec_orders WHERE id = $1',
          [id],
        );
        expect(row).toEqual({ label: body.marker, xmin: xids[0] });
      }
      expect(processed.get(jobId)).toEqual({
        orderId: id,
        marker: body.marker,
        foundLabel: body.marker,
      });
    }
    const xids = responses
      .filter((res) => res.status === 201)
      .map((res) => res.body.xids[0]);
    expect(new Set(xids).size).toBe(committed.length);
    // Exactly the committed requests' jobs reached Redis: no rolled-back job leaked into
    // another request's commit, and no committed job was lost with another's rollback.
    expect(ofThisRun()).toHaveLength(committed.length);
    expect(await queue.getJobCounts()).toEqual({
      ...NO_JOBS,
      completed: processed.size,
    });
  }

  it('should give each request its own transaction, row and job, and let every processor find its row', async () => {
    await runConcurrently(() => false);
  });

  it('should drop exactly the jobs of the requests that roll back, interleaved with requests that commit', async () => {
    await runConcurrently((i) => i % FAIL_EVERY === FAIL_EVERY - 1);
  });
});
