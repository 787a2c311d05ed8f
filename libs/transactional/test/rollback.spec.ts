import {
  Body,
  ConflictException,
  Controller,
  INestApplication,
  Injectable,
  Post,
} from '@nestjs/common';
import type { Queue } from 'bull';
import request from 'supertest';
import { DataSource, Entity, ManyToOne, PrimaryGeneratedColumn } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
  TransactionRunner,
} from '../src';
import { Order } from './support/order.entity';
import { uniqueName } from './support/env';
import {
  NO_JOBS,
  bullQueue,
  closeLibApp,
  createLibApp,
  findJob,
  jobCounts,
} from './support/lib-app';
import { dbQuery, poolState } from './support/db';

const QUEUE = uniqueName('rollback');

type OrderJob = { orderId: string };
type CreateBody = { label: string; fail?: 'conflict' | 'error' | 'commit' };

/** A row whose foreign key is checked only at COMMIT, so that a transaction can fail there. */
@Entity({ name: 'tx_spec_order_notes' })
class OrderNote {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @ManyToOne(() => Order, { deferrable: 'INITIALLY DEFERRED', nullable: false })
  order: Order;
}

/** What each attempt wrote and queued, and which hooks ran, in order. */
const attempts: { label: string; orderId: string; jobId: string }[] = [];
const hooks: string[] = [];

@Injectable()
class OrdersService {
  constructor(
    private readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(QUEUE)
    private readonly queue: TransactionAwareQueue<OrderJob>,
  ) {}

  /** Writes a row, queues its job and registers hooks; then fails as `fail` says. */
  @Transactional()
  async create({ label, fail }: CreateBody) {
    const order = await this.tx.getRepository(Order).save({ label });
    const jobId = await this.queue.add({ orderId: order.id });
    attempts.push({ label, orderId: order.id, jobId });
    void this.tx.afterCommit(() => hooks.push(`after-commit ${label}`));
    this.tx.afterRollback(() => hooks.push(`after-rollback ${label}`));
    if (fail === 'conflict') {
      throw new ConflictException(`order ${label} already exists`);
    }
    if (fail === 'error') throw new Error(`disk full while saving ${label}`);
    if (fail === 'commit') {
      // NOTE: the foreign key is DEFERRABLE INITIALLY DEFERRED: the INSERT succeeds and the
      // violation surfaces only when COMMIT runs, after this method has returned.
      await dbQuery(
        this.tx.manager,
        'INSERT INTO tx_spec_order_notes (id, "orderId") VALUES (gen_random_uuid(), gen_random_uuid())',
      );
    }
    return { id: order.id, jobId };
  }
}

@Controller('orders')
class OrdersController {
  constructor(
    private readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(QUEUE)
    private readonly queue: TransactionAwareQueue<OrderJob>,
    private readonly service: OrdersService,
  ) {}

  /** Does the work in the handler itself. */
  @Post()
  @Transactional()
  async create(@Body() { label, fail }: CreateBody) {
    const order = await this.tx.getRepository(Order).save({ label });
    const jobId = await this.queue.add({ orderId: order.id });
    attempts.push({ label, orderId: order.id, jobId });
    void this.tx.afterCommit(() => hooks.push(`after-commit ${label}`));
    this.tx.afterRollback(() => hooks.push(`after-rollback ${label}`));
    if (fail === 'conflict') {
      throw new ConflictException(`order ${label} already exists`);
    }
    if (fail === 'error') throw new Error(`disk full while saving ${label}`);
    return { id: order.id, jobId };
  }

  /** Delegates to the @Transactional service, which joins the handler's transaction. */
  @Post('via-service')
  @Transactional()
  async createViaService(@Body() body: CreateBody) {
    return this.service.create(body);
  }
}

describe('when a transaction that queued a job rolls back', () => {
  let app: INestApplication;
  let queue: Queue<OrderJob>;
  let dataSource: DataSource;
  let runner: TransactionRunner;

  beforeAll(async () => {
    app = await createLibApp({
      controllers: [OrdersController],
      providers: [OrdersService],
      queues: [{ name: QUEUE }],
      entities: [OrderNote],
    });
    queue = bullQueue(app, QUEUE);
    dataSource = app.get(DataSource);
    runner = app.get(TransactionRunner);
  });

  afterAll(() => closeLibApp(app, [QUEUE]));

  beforeEach(() => {
    attempts.length = 0;
    hooks.length = 0;
  });

  const rowsLabelled = (label: string) =>
    dataSource.getRepository(Order).countBy({ label });
  const post = async (path: string, body: CreateBody) =>
    request(await app.getUrl())
      .post(path)
      .send(body);

  /** Asserts that the one attempt left nothing behind: no row, no job, only its rollback hook. */
  async function expectNothingLeft(label: string) {
    expect(attempts).toEqual([
      { label, orderId: expect.any(String), jobId: expect.any(String) },
    ]);
    expect(await rowsLabelled(label)).toBe(0);
    expect(await findJob(queue, attempts[0].jobId)).toBeNull();
    expect(await jobCounts(queue)).toEqual(NO_JOBS);
    expect(hooks).toEqual([`after-rollback ${label}`]);
    // The transaction's connection went back to the pool.
    expect(poolState(dataSource).inUse).toBe(0);
  }

  it('should commit the row and enqueue the job when the same handler does not throw', async () => {
    const label = uniqueName('kept');

    const res = await post('/orders', { label });

    expect(res.status).toBe(201);
    expect(res.body).toEqual({
      id: attempts[0].orderId,
      jobId: attempts[0].jobId,
    });
    expect(await rowsLabelled(label)).toBe(1);
    const job = await findJob(queue, attempts[0].jobId);
    expect(job?.data).toEqual({ orderId: attempts[0].orderId });
    expect(hooks).toEqual([`after-commit ${label}`]);
    await job!.remove();
    expect(await jobCounts(queue)).toEqual(NO_JOBS);
  });

  it('should leave no row and no job and answer with the HttpException when the handler throws it', async () => {
    const label = uniqueName('conflict');
    const before = { ...runner.stats };

    const res = await post('/orders', { label, fail: 'conflict' });

    expect(res.status).toBe(409);
    expect(res.body).toEqual({
      statusCode: 409,
      message: `order ${label} already exists`,
      error: 'Conflict',
    });
    await expectNothingLeft(label);
    expect(runner.stats.rolledBack).toBe(before.rolledBack + 1);
    expect(runner.stats.committed).toBe(before.committed);
  });

  it('should leave no row and no job and answer 500 when the handler throws a plain Error', async () => {
    const label = uniqueName('error');

    const res = await post('/orders', { label, fail: 'error' });

    expect(res.status).toBe(500);
    expect(res.body).toEqual({
      statusCode: 500,
      message: 'Internal server error',
    });
    await expectNothingLeft(label);
  });

  it('should roll back the handler transaction a @Transactional service joined when the service throws', async () => {
    const label = uniqueName('service-conflict');

    const res = await post('/orders/via-service', { label, fail: 'conflict' });

    expect(res.status).toBe(409);
    expect(res.body.message).toBe(`order ${label} already exists`);
    await expectNothingLeft(label);
  });

  it('should leave no row and no job when COMMIT itself fails', async () => {
    const label = uniqueName('commit-fails');

    const res = await post('/orders/via-service', { label, fail: 'commit' });

    expect(res.status).toBe(500);
    await expectNothingLeft(label);
  });

  describe('when a @Transactional provider method is called without HTTP', () => {
    it('should reject with the thrown error and leave no row and no job', async () => {
      const label = uniqueName('provider-conflict');
      const service = app.get(OrdersService);

      const outcome = service.create({ label, fail: 'conflict' });

      await expect(outcome).rejects.toThrow(ConflictException);
      await expect(outcome).rejects.toThrow(`order ${label} already exists`);
      await expectNothingLeft(label);
    });

    it('should reject with the database error and leave no row and no job when COMMIT fails', async () => {
      const label = uniqueName('provider-commit-fails');
      const service = app.get(OrdersService);

      await expect(service.create({ label, fail: 'commit' })).rejects.toThrow(
        /foreign key constraint/,
      );
      await expectNothingLeft(label);
    });
  });
});
