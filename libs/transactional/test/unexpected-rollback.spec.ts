import { INestApplication, Injectable } from '@nestjs/common';
import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  Propagation,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
  TransactionRunner,
  UnexpectedRollbackError,
} from '../src';
import { onMariaDb, uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
} from './support/lib-app';
import { dbQuery, FAILING_SQL } from './support/db';

const QUEUE = uniqueName('unexpected-rollback');

/** A row with a unique code: inserting a code twice is a database error (23505). */
@Entity({ name: 'tx_spec_unique_items' })
class UniqueItem {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column({ unique: true })
  code: string;
}

const events: string[] = [];

@Injectable()
class Items {
  constructor(
    private readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(QUEUE)
    private readonly queue: TransactionAwareQueue<{ code: string }>,
  ) {}

  /** Inserts a row and queues its job; a duplicate code fails in the database. */
  @Transactional()
  async insert(code: string): Promise<string> {
    await this.tx.getRepository(UniqueItem).insert({ code });
    return this.queue.add({ code });
  }

  @Transactional({ propagation: Propagation.Nested })
  async insertNested(code: string): Promise<string> {
    return this.insert(code);
  }

  /** Catches a database error of a joined REQUIRED call and returns normally. */
  @Transactional()
  async insertTwiceSwallowing(code: string, jobs: string[]) {
    this.hooks(code);
    jobs.push(await this.insert(code));
    await this.insert(code).catch((error: Error) => {
      events.push(`caught ${error.constructor.name}`);
    });
  }

  /** The same, but the database error is caught inside a NESTED scope that returns. */
  @Transactional()
  async outerWithSwallowingNested(code: string, jobs: string[]) {
    jobs.push(await this.insert(`${code}-outer`));
    await this.nestedSwallowing(code, jobs).catch((error: Error) => {
      events.push(`outer caught ${error.constructor.name}`);
    });
  }

  @Transactional({ propagation: Propagation.Nested })
  async nestedSwallowing(code: string, jobs: string[]) {
    this.hooks(`${code}-nested`);
    jobs.push(await this.insert(code));
    await this.insert(code).catch(() => events.push('nested caught'));
  }

  /** A REQUIRES_NEW scope that swallows its database error, called from a transaction. */
  @Transactional()
  async outerWithSwallowingNew(code: string, jobs: string[]) {
    jobs.push(await this.insert(`${code}-outer`));
    await this.newSwallowing(code, jobs).catch((error: Error) => {
      events.push(`outer caught ${error.constructor.name}`);
    });
  }

  @Transactional({ propagation: Propagation.RequiresNew })
  async newSwallowing(code: string, jobs: string[]) {
    jobs.push(await this.insert(code));
    await this.insert(code).catch(() => events.push('new caught'));
  }

  /** A NESTED scope that returns while a statement of its own is still failing. */
  @Transactional()
  async outerWithLateFailingNested(code: string, jobs: string[]) {
    jobs.push(await this.insert(`${code}-outer`));
    await this.nestedLateFailure(code, jobs).catch((error: Error) => {
      events.push(`outer caught ${error.constructor.name}`);
    });
    jobs.push(await this.insert(`${code}-after`));
  }

  @Transactional({ propagation: Propagation.Nested })
  async nestedLateFailure(code: string, jobs: string[]) {
    this.hooks(`${code}-nested`);
    jobs.push(await this.insert(code));
    // Not awaited: the failing statement is queued on the connection ahead of RELEASE.
    void dbQuery(this.tx.manager, FAILING_SQL).catch(() =>
      events.push('statement failed'),
    );
  }

  private hooks(label: string) {
    void this.tx.afterCommit(() => events.push(`after-commit ${label}`));
    this.tx.afterRollback(() => events.push(`after-rollback ${label}`));
  }
}

/*
 * Postgres aborts the whole transaction on a failed statement; MySQL/MariaDB roll back only the
 * statement (their whole-transaction rollbacks, deadlocks and the like, are the subject of
 * implicit-rollback.spec.ts). Each case asserts the behaviour of the database it runs on.
 */
describe('when a database error is caught and the scope returns normally', () => {
  let app: INestApplication;
  let items: Items;
  let runner: TransactionRunner;

  const rows = async (prefix: string) =>
    (
      await dbQuery(
        app.get(TransactionHost).manager,
        `SELECT code FROM tx_spec_unique_items WHERE code LIKE $1 ORDER BY code`,
        [`${prefix}%`],
      )
    ).map((row: { code: string }) => row.code);

  beforeAll(async () => {
    app = await createLibApp({
      providers: [Items],
      queues: [{ name: QUEUE }],
      entities: [UniqueItem],
      listen: false,
    });
    items = app.get(Items);
    runner = app.get(TransactionRunner);
  });

  afterAll(() => closeLibApp(app, [QUEUE]));

  beforeEach(() => {
    events.length = 0;
  });

  it('should reject with UnexpectedRollbackError, keep no row, enqueue no job and run only after-rollback hooks (REQUIRED joined)', async () => {
    const code = uniqueName('joined');
    const jobs: string[] = [];
    const rolledBack = runner.stats.rolledBack;
    const committed = runner.stats.committed;

    const error = await items
      .insertTwiceSwallowing(code, jobs)
      .catch((e: unknown) => e);

    if (onMariaDb) {
      // Only the failed INSERT was rolled back: the rest commits, and its job goes out.
      expect(error).toBeUndefined();
      expect(events).toEqual([
        'caught QueryFailedError',
        `after-commit ${code}`,
      ]);
      expect(await rows(code)).toEqual([code]);
      expect(await inRedis(bullQueue(app, QUEUE), jobs[0])).toBe(true);
      expect(runner.stats.committed).toBe(committed + 1);
      return;
    }
    expect(error).toBeInstanceOf(UnexpectedRollbackError);
    expect(String(error)).toContain('Items.insertTwiceSwallowing');
    expect(events).toEqual([
      'caught QueryFailedError',
      `after-rollback ${code}`,
    ]);
    expect(await rows(code)).toEqual([]);
    expect(jobs).toHaveLength(1);
    expect(await inRedis(bullQueue(app, QUEUE), jobs[0])).toBe(false);
    expect(runner.stats.rolledBack).toBe(rolledBack + 1);
    expect(runner.stats.committed).toBe(committed);
  });

  it('should roll the NESTED scope back to its savepoint and reject it, while the outer transaction commits its own work', async () => {
    const code = uniqueName('nested');
    const jobs: string[] = [];

    await items.outerWithSwallowingNested(code, jobs);

    if (onMariaDb) {
      expect(events).toEqual(['nested caught', `after-commit ${code}-nested`]);
      expect(await rows(code)).toEqual([code, `${code}-outer`]);
      const queue = bullQueue(app, QUEUE);
      expect(await inRedis(queue, jobs[0])).toBe(true);
      expect(await inRedis(queue, jobs[1])).toBe(true);
      return;
    }
    expect(events).toEqual([
      'nested caught',
      'outer caught UnexpectedRollbackError',
      `after-rollback ${code}-nested`,
    ]);
    expect(await rows(code)).toEqual([`${code}-outer`]);
    const queue = bullQueue(app, QUEUE);
    expect(await inRedis(queue, jobs[0])).toBe(true);
    expect(await inRedis(queue, jobs[1])).toBe(false);
  });

  it('should roll a NESTED scope back and reject it when its failing statement is still running as it returns', async () => {
    const code = uniqueName('late-nested');
    const jobs: string[] = [];

    await items.outerWithLateFailingNested(code, jobs);

    if (onMariaDb) {
      expect(events).toEqual([
        'statement failed',
        `after-commit ${code}-nested`,
      ]);
      expect(await rows(code)).toEqual([
        code,
        `${code}-after`,
        `${code}-outer`,
      ]);
      const queue = bullQueue(app, QUEUE);
      for (const job of jobs) expect(await inRedis(queue, job)).toBe(true);
      return;
    }
    expect(events).toEqual([
      'statement failed',
      'outer caught UnexpectedRollbackError',
      `after-rollback ${code}-nested`,
    ]);
    expect(await rows(code)).toEqual([`${code}-after`, `${code}-outer`]);
    const queue = bullQueue(app, QUEUE);
    expect(await inRedis(queue, jobs[0])).toBe(true);
    expect(await inRedis(queue, jobs[1])).toBe(false);
    expect(await inRedis(queue, jobs[2])).toBe(true);
  });

  it('should reject a REQUIRES_NEW scope whose commit Postgres turned into a rollback, and keep the caller transaction', async () => {
    const code = uniqueName('new');
    const jobs: string[] = [];

    await items.outerWithSwallowingNew(code, jobs);

    if (onMariaDb) {
      expect(events).toEqual(['new caught']);
      expect(await rows(code)).toEqual([code, `${code}-outer`]);
      const queue = bullQueue(app, QUEUE);
      expect(await inRedis(queue, jobs[0])).toBe(true);
      expect(await inRedis(queue, jobs[1])).toBe(true);
      return;
    }
    expect(events).toEqual([
      'new caught',
      'outer caught UnexpectedRollbackError',
    ]);
    expect(await rows(code)).toEqual([`${code}-outer`]);
    const queue = bullQueue(app, QUEUE);
    expect(await inRedis(queue, jobs[0])).toBe(true);
    expect(await inRedis(queue, jobs[1])).toBe(false);
  });

  it('should detect the rollback from the COMMIT answer too, when the failing statement is still running as the scope returns', async () => {
    const code = uniqueName('late-statement');
    const host = app.get(TransactionHost);
    let jobId = '';
    const error = await host
      .withTransaction(async () => {
        jobId = await items.insert(code);
        // Not awaited: the failing statement is queued on the connection ahead of COMMIT.
        void dbQuery(host.manager, FAILING_SQL).catch(() =>
          events.push('statement failed'),
        );
      })
      .catch((e: unknown) => e);

    if (onMariaDb) {
      expect(error).toBeUndefined();
      expect(events).toContain('statement failed');
      expect(await rows(code)).toEqual([code]);
      expect(await inRedis(bullQueue(app, QUEUE), jobId)).toBe(true);
      return;
    }
    expect(error).toBeInstanceOf(UnexpectedRollbackError);
    expect(events).toContain('statement failed');
    expect(await rows(code)).toEqual([]);
    expect(await inRedis(bullQueue(app, QUEUE), jobId)).toBe(false);
  });
});
