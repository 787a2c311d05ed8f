import { InjectQueue } from '@nestjs/bull';
import {
  Controller,
  INestApplication,
  Injectable,
  Param,
  Post,
} from '@nestjs/common';
import type { Queue } from 'bull';
import request from 'supertest';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  NoTransactionError,
  Propagation,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
  TransactionNotAllowedError,
  TransactionRequiredError,
  TransactionRunner,
  getTransactionAwareQueueToken,
} from '../src';
import { Order } from './support/order.entity';
import { uniqueName, onMariaDb } from './support/env';
import {
  NO_JOBS,
  bullQueue,
  closeLibApp,
  createLibApp,
  findJob,
  inRedis,
  jobCounts,
} from './support/lib-app';
import { dbQuery, transactionId, FAILING_SQL } from './support/db';

const QUEUE = uniqueName('propagation');
/** Registered with whenNoTransaction: 'throw'. */
const STRICT = uniqueName('propagation-strict');
const RUN = uniqueName('propagation-run');

type StepJob = { step: string; orderId: string };

/** What one step wrote, queued and saw. */
interface Written {
  step: string;
  orderId: string;
  jobId: string;
  /** `txid_current()` of the step: equal ids mean one physical transaction. */
  txid: string;
  /** `TransactionHost.isActive` inside the step. */
  active: boolean;
}

interface StepOptions {
  fail?: boolean;
  /** Queue through the STRICT queue (whenNoTransaction: 'throw'). */
  strict?: boolean;
  /** Run a failing SQL statement instead of throwing from JavaScript. */
  sqlError?: boolean;
  /** Log whether the step can read the row of this earlier step. */
  peek?: string;
}

/** Everything the steps, their hooks and the observer did, in order. */
const log: string[] = [];
/** Every step body that started, in order. */
const started: string[] = [];
/** The row and job of every step that got that far, by step name. */
const wrote = new Map<string, { orderId: string; jobId: string }>();

const label = (step: string) => `${RUN} ${step}`;

async function txid(host: TransactionHost): Promise<string> {
  return transactionId(host.manager);
}

@Injectable()
class Steps {
  constructor(
    private readonly host: TransactionHost,
    @InjectTransactionAwareQueue(QUEUE)
    private readonly queue: TransactionAwareQueue<StepJob>,
    @InjectTransactionAwareQueue(STRICT)
    private readonly strict: TransactionAwareQueue<StepJob>,
  ) {}

  /** Writes a row, queues its job and registers hooks; then fails if asked. */
  async write(step: string, options: StepOptions = {}): Promise<Written> {
    started.push(step);
    if (options.peek) {
      const seen = await this.host
        .getRepository(Order)
        .existsBy({ id: wrote.get(options.peek)!.orderId });
      log.push(`${step} sees the ${options.peek} row: ${seen}`);
    }
    const row = await this.host
      .getRepository(Order)
      .save({ label: label(step) });
    const queue = options.strict ? this.strict : this.queue;
    const jobId = await queue.add({ step, orderId: row.id });
    wrote.set(step, { orderId: row.id, jobId });
    await this.host.afterCommit(() =>
      log.push(`after-commit ${step} (active: ${this.host.isActive})`),
    );
    this.host.afterRollback(() => log.push(`after-rollback ${step}`));
    log.push(`${step} wrote`);
    if (options.sqlError) await dbQuery(this.host.manager, FAILING_SQL);
    if (options.fail) throw new Error(`${step} failed`);
    return {
      step,
      orderId: row.id,
      jobId,
      txid: await txid(this.host),
      active: this.host.isActive,
    };
  }

  @Transactional()
  required(step: string, options?: StepOptions) {
    return this.write(step, options);
  }

  @Transactional({ propagation: Propagation.Nested })
  nested(step: string, options?: StepOptions) {
    return this.write(step, options);
  }

  @Transactional({ propagation: Propagation.RequiresNew })
  requiresNew(step: string, options?: StepOptions) {
    return this.write(step, options);
  }

  @Transactional({ propagation: Propagation.Supports })
  supports(step: string, options?: StepOptions) {
    return this.write(step, options);
  }

  @Transactional({ propagation: Propagation.Mandatory })
  mandatory(step: string, options?: StepOptions) {
    return this.write(step, options);
  }

  @Transactional({ propagation: Propagation.Never })
  never(step: string, options?: StepOptions) {
    return this.write(step, options);
  }

  @Transactional({ propagation: Propagation.NotSupported })
  notSupported(step: string, options?: StepOptions) {
    return this.write(step, options);
  }
}

/** Opens the outer transaction (REQUIRED) around whatever a test does. */
@Injectable()
class Outer {
  @Transactional()
  async run<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }
}

/** Looks at Postgres and Redis from outside every transaction. */
@Injectable()
class Observer {
  constructor(
    private readonly dataSource: DataSource,
    @InjectQueue(QUEUE) private readonly queue: Queue<StepJob>,
  ) {}

  /** Whether the row is committed (read on another pooled connection). */
  committed(orderId: string): Promise<boolean> {
    return this.dataSource.getRepository(Order).existsBy({ id: orderId });
  }

  /** Whether Redis holds the job. */
  queued(jobId: string): Promise<boolean> {
    return inRedis(this.queue, jobId);
  }

  /** Logs whether each step's row is committed and its job is in Redis. */
  async note(moment: string, ...stepNames: string[]) {
    const parts: string[] = [];
    for (const step of stepNames) {
      const { orderId, jobId } = wrote.get(step)!;
      const row = (await this.committed(orderId)) ? 'committed' : 'absent';
      const job = (await this.queued(jobId)) ? 'queued' : 'absent';
      parts.push(`${step} row ${row}, job ${job}`);
    }
    log.push(`${moment}: ${parts.join('; ')}`);
  }
}

/** Route handlers whose own scope opens a transaction (REQUIRES_NEW) or savepoint (NESTED). */
@Controller('steps')
class StepsController {
  constructor(
    private readonly steps: Steps,
    private readonly observe: Observer,
  ) {}

  @Post('requires-new/:step')
  @Transactional({ propagation: Propagation.RequiresNew })
  async requiresNew(@Param('step') step: string) {
    return this.writeAndNote(step);
  }

  @Post('nested/:step')
  @Transactional({ propagation: Propagation.Nested })
  async nested(@Param('step') step: string) {
    return this.writeAndNote(step);
  }

  private async writeAndNote(step: string) {
    const written = await this.steps.write(step);
    await this.observe.note('handler returns', step);
    return written;
  }
}

describe('when scopes with each propagation are combined', () => {
  let app: INestApplication;
  let steps: Steps;
  let outer: Outer;
  let observe: Observer;
  let host: TransactionHost;
  let awareQueue: TransactionAwareQueue<StepJob>;

  beforeAll(async () => {
    app = await createLibApp({
      controllers: [StepsController],
      providers: [Steps, Outer, Observer],
      queues: [{ name: QUEUE }, { name: STRICT, whenNoTransaction: 'throw' }],
    });
    steps = app.get(Steps);
    outer = app.get(Outer);
    observe = app.get(Observer);
    host = app.get(TransactionHost);
    awareQueue = app.get(getTransactionAwareQueueToken(QUEUE));
  });

  afterAll(() => closeLibApp(app, [QUEUE, STRICT]));

  beforeEach(() => {
    log.length = 0;
    started.length = 0;
    wrote.clear();
  });

  const rowsOf = (step: string) =>
    app
      .get(DataSource)
      .getRepository(Order)
      .countBy({ label: label(step) });

  describe('when a REQUIRED transaction queues jobs', () => {
    it('should keep every job out of Redis until the outermost commit, then enqueue them all', async () => {
      const countsBefore = await jobCounts(bullQueue(app, QUEUE));
      let countsInside: object | undefined;
      const [first, joined] = await outer.run(async () => {
        const written = [
          await steps.required('first'),
          await steps.required('joined'),
        ];
        await observe.note('inside', 'first', 'joined');
        countsInside = await jobCounts(bullQueue(app, QUEUE));
        return written;
      });
      await observe.note('after commit', 'first', 'joined');

      expect(joined.txid).toBe(first.txid);
      expect(countsInside).toEqual(countsBefore);
      expect(await jobCounts(bullQueue(app, QUEUE))).toEqual({
        ...countsBefore,
        waiting: countsBefore.waiting + 2,
      });
      expect(log).toEqual([
        'first wrote',
        'joined wrote',
        'inside: first row absent, job absent; joined row absent, job absent',
        'after-commit first (active: false)',
        'after-commit joined (active: false)',
        'after commit: first row committed, job queued; joined row committed, job queued',
      ]);
      const job = await findJob(bullQueue(app, QUEUE), first.jobId);
      expect(job?.data).toEqual({ step: 'first', orderId: first.orderId });
    });

    it('should commit the writes of a REQUIRED method that threw when the outer caught its error (joining marks nothing rollback-only)', async () => {
      await outer.run(async () => {
        await steps.required('joined-fails', { fail: true }).catch(() => {
          log.push('outer caught');
        });
      });
      await observe.note('after commit', 'joined-fails');

      expect(log).toEqual([
        'joined-fails wrote',
        'outer caught',
        'after-commit joined-fails (active: false)',
        'after commit: joined-fails row committed, job queued',
      ]);
    });
  });

  describe('when a NESTED scope rolls back and the outer catches the error', () => {
    it('should drop its row, job and after-commit hook, run its after-rollback hook once the outer transaction has ended, then the outer work in FIFO order', async () => {
      await outer.run(async () => {
        await steps.required('before');
        await steps.nested('nested', { fail: true }).catch((error: Error) => {
          log.push(`outer caught: ${error.message}`);
        });
        await steps.required('after', { peek: 'nested' });
      });
      await observe.note('after commit', 'before', 'nested', 'after');

      expect(started).toEqual(['before', 'nested', 'after']);
      expect(log).toEqual([
        'before wrote',
        'nested wrote',
        'outer caught: nested failed',
        'after sees the nested row: false',
        'after wrote',
        'after-rollback nested',
        'after-commit before (active: false)',
        'after-commit after (active: false)',
        'after commit: before row committed, job queued; nested row absent, job absent; after row committed, job queued',
      ]);
    });

    it('should run jobs and hooks in registration order: each hook sees exactly the jobs added before it', async () => {
      const ids: string[] = [];
      const seen: string[] = [];
      const redisHolds = async () => {
        const held: string[] = [];
        for (const [i, id] of ids.entries()) {
          if (await observe.queued(id)) held.push(`job${i + 1}`);
        }
        return held.join(',') || 'none';
      };
      const hook = (name: string) =>
        host.afterCommit(async () => {
          seen.push(`${name} sees ${await redisHolds()}`);
        });

      let dropped = '';
      await outer.run(async () => {
        await hook('hook0');
        ids.push(await awareQueue.add({ step: 'job1', orderId: '-' }));
        await hook('hook1');
        await host
          .withTransaction(
            async () => {
              dropped = await awareQueue.add({ step: 'dropped', orderId: '-' });
              await hook('dropped hook');
              throw new Error('savepoint rolled back');
            },
            { propagation: Propagation.Nested },
          )
          .catch(() => undefined);
        ids.push(await awareQueue.add({ step: 'job2', orderId: '-' }));
        ids.push(await awareQueue.add({ step: 'job3', orderId: '-' }));
        await hook('hook2');
        ids.push(await awareQueue.add({ step: 'job4', orderId: '-' }));
        seen.push(`inside sees ${await redisHolds()}`);
      });

      expect(seen).toEqual([
        'inside sees none',
        'hook0 sees none',
        'hook1 sees job1',
        'hook2 sees job1,job2,job3',
      ]);
      expect(await redisHolds()).toBe('job1,job2,job3,job4');
      expect(dropped).not.toBe('');
      expect(await observe.queued(dropped)).toBe(false);
    });

    it('should let the outer transaction go on after a database error inside the NESTED scope', async () => {
      let nestedError: unknown;
      await outer.run(async () => {
        await steps.nested('bad-sql', { sqlError: true }).catch((error) => {
          nestedError = error;
        });
        await steps.required('after-bad-sql');
      });
      await observe.note('after commit', 'bad-sql', 'after-bad-sql');

      expect(String(nestedError)).toMatch(
        onMariaDb ? /Unknown column/ : /division by zero/,
      );
      expect(log).toEqual([
        'bad-sql wrote',
        'after-bad-sql wrote',
        'after-rollback bad-sql',
        'after-commit after-bad-sql (active: false)',
        'after commit: bad-sql row absent, job absent; after-bad-sql row committed, job queued',
      ]);
    });
  });

  describe('when a NESTED scope returns', () => {
    it('should hand its job and hooks to the outer: nothing reaches Redis before the outer commit, then all in order', async () => {
      const [before, nested] = await outer.run(async () => {
        const written = [
          await steps.required('before'),
          await steps.nested('nested'),
        ];
        await observe.note('nested returned', 'nested');
        await steps.required('after');
        return written;
      });
      await observe.note('after commit', 'nested');

      expect(nested.txid).toBe(before.txid);
      expect(nested.active).toBe(true);
      expect(log).toEqual([
        'before wrote',
        'nested wrote',
        'nested returned: nested row absent, job absent',
        'after wrote',
        'after-commit before (active: false)',
        'after-commit nested (active: false)',
        'after-commit after (active: false)',
        'after commit: nested row committed, job queued',
      ]);
    });

    it('should drop its job and run its after-rollback hook after the outer one when the outer rolls back', async () => {
      await expect(
        outer.run(async () => {
          await steps.required('outer');
          await steps.nested('nested');
          throw new Error('outer failed');
        }),
      ).rejects.toThrow('outer failed');
      await observe.note('after rollback', 'outer', 'nested');

      expect(log).toEqual([
        'outer wrote',
        'nested wrote',
        'after-rollback outer',
        'after-rollback nested',
        'after rollback: outer row absent, job absent; nested row absent, job absent',
      ]);
    });
  });

  describe('when a REQUIRES_NEW scope runs inside a transaction', () => {
    it('should commit and enqueue on its own commit while the outer is open, not see the outer row, and survive the outer rollback', async () => {
      let txids: string[] = [];
      await expect(
        outer.run(async () => {
          const outerStep = await steps.required('outer');
          const inner = await steps.requiresNew('inner', { peek: 'outer' });
          await observe.note('inner returned', 'outer', 'inner');
          txids = [outerStep.txid, inner.txid];
          throw new Error('outer failed');
        }),
      ).rejects.toThrow('outer failed');
      await observe.note('after outer rollback', 'outer', 'inner');

      expect(new Set(txids).size).toBe(2);
      expect(log).toEqual([
        'outer wrote',
        'inner sees the outer row: false',
        'inner wrote',
        'after-commit inner (active: false)',
        'inner returned: outer row absent, job absent; inner row committed, job queued',
        'after-rollback outer',
        'after outer rollback: outer row absent, job absent; inner row committed, job queued',
      ]);
    });

    it('should roll back on its own without touching the outer when it throws', async () => {
      await outer.run(async () => {
        await steps.required('outer');
        await steps.requiresNew('inner', { fail: true }).catch(() => {
          log.push('outer caught');
        });
      });
      await observe.note('after commit', 'outer', 'inner');

      expect(log).toEqual([
        'outer wrote',
        'inner wrote',
        'after-rollback inner',
        'outer caught',
        'after-commit outer (active: false)',
        'after commit: outer row committed, job queued; inner row absent, job absent',
      ]);
    });
  });

  describe('when a SUPPORTS scope runs', () => {
    it('should join the active transaction (its row and job go with the outer rollback)', async () => {
      let txids: string[] = [];
      await expect(
        outer.run(async () => {
          const outerStep = await steps.required('outer');
          const supports = await steps.supports('supports');
          await observe.note('supports returned', 'supports');
          txids = [outerStep.txid, supports.txid];
          throw new Error('outer failed');
        }),
      ).rejects.toThrow('outer failed');
      await observe.note('after rollback', 'supports');

      expect(txids[1]).toBe(txids[0]);
      expect(log).toEqual([
        'outer wrote',
        'supports wrote',
        'supports returned: supports row absent, job absent',
        'after-rollback outer',
        'after-rollback supports',
        'after rollback: supports row absent, job absent',
      ]);
    });

    it('should run without a transaction when none is active: the row commits and the job is enqueued at once', async () => {
      const written = await steps.supports('alone');
      await observe.note('returned', 'alone');

      expect(written.active).toBe(false);
      expect(log).toEqual([
        // Outside a transaction, afterCommit runs its hook at once.
        'after-commit alone (active: false)',
        'alone wrote',
        'returned: alone row committed, job queued',
      ]);
    });

    it("should apply the queue's whenNoTransaction policy when none is active", async () => {
      await expect(
        steps.supports('alone-strict', { strict: true }),
      ).rejects.toThrow(NoTransactionError);

      expect(started).toEqual(['alone-strict']);
      expect(wrote.has('alone-strict')).toBe(false);
      // With no transaction, the row saved before add() was committed on its own.
      expect(await rowsOf('alone-strict')).toBe(1);
      expect(await jobCounts(bullQueue(app, STRICT))).toEqual(NO_JOBS);
    });
  });

  describe('when a MANDATORY scope runs', () => {
    it('should throw TransactionRequiredError without a transaction and not run the method', async () => {
      const outcome = steps.mandatory('mandatory');

      await expect(outcome).rejects.toThrow(TransactionRequiredError);
      await expect(outcome).rejects.toThrow(/Steps\.mandatory/);
      expect(started).toEqual([]);
    });

    it('should join the active transaction', async () => {
      const [outerStep, mandatory] = await outer.run(async () => {
        const written = [
          await steps.required('outer'),
          await steps.mandatory('mandatory'),
        ];
        await observe.note('mandatory returned', 'mandatory');
        return written;
      });

      expect(mandatory.txid).toBe(outerStep.txid);
      expect(log).toEqual([
        'outer wrote',
        'mandatory wrote',
        'mandatory returned: mandatory row absent, job absent',
        'after-commit outer (active: false)',
        'after-commit mandatory (active: false)',
      ]);
    });
  });

  describe('when a NEVER scope runs', () => {
    it('should throw TransactionNotAllowedError inside a transaction and not run the method', async () => {
      const error = await outer.run(() =>
        steps.never('never').catch((e: unknown) => e),
      );

      expect(error).toBeInstanceOf(TransactionNotAllowedError);
      expect(String(error)).toMatch(/Steps\.never/);
      expect(started).toEqual([]);
    });

    it('should run without a transaction outside one', async () => {
      const written = await steps.never('never');
      await observe.note('returned', 'never');

      expect(written.active).toBe(false);
      expect(log).toEqual([
        'after-commit never (active: false)',
        'never wrote',
        'returned: never row committed, job queued',
      ]);
    });
  });

  describe('when a NOT_SUPPORTED scope runs inside a transaction', () => {
    it('should suspend the transaction: none is active inside, its row and job commit on their own, and the outer resumes after it', async () => {
      let resumed: boolean | undefined;
      let txids: string[] = [];
      await expect(
        outer.run(async () => {
          const outerStep = await steps.required('outer');
          const suspended = await steps.notSupported('suspended', {
            peek: 'outer',
          });
          await observe.note('suspended returned', 'outer', 'suspended');
          resumed = host.isActive;
          txids = [outerStep.txid, await txid(host)];
          log.push(`suspended was active: ${suspended.active}`);
          throw new Error('outer failed');
        }),
      ).rejects.toThrow('outer failed');
      await observe.note('after outer rollback', 'outer', 'suspended');

      expect(resumed).toBe(true);
      expect(txids[1]).toBe(txids[0]);
      expect(log).toEqual([
        'outer wrote',
        'suspended sees the outer row: false',
        'after-commit suspended (active: false)',
        'suspended wrote',
        'suspended returned: outer row absent, job absent; suspended row committed, job queued',
        'suspended was active: false',
        'after-rollback outer',
        'after outer rollback: outer row absent, job absent; suspended row committed, job queued',
      ]);
    });
  });

  describe('when the propagation is set on a controller handler', () => {
    it.each(['requires-new', 'nested'])(
      'should open exactly one transaction for a %s handler and enqueue its job after its commit, before the response',
      async (path) => {
        const runner = app.get(TransactionRunner);
        const before = runner.stats.committed;

        const res = await request(await app.getUrl()).post(
          `/steps/${path}/${path}-handler`,
        );
        await observe.note('response', `${path}-handler`);

        expect(res.status).toBe(201);
        expect(res.body.active).toBe(true);
        expect(runner.stats.committed).toBe(before + 1);
        expect(log).toEqual([
          `${path}-handler wrote`,
          `handler returns: ${path}-handler row absent, job absent`,
          `after-commit ${path}-handler (active: false)`,
          `response: ${path}-handler row committed, job queued`,
        ]);
      },
    );
  });
});
