/**
 * Red-team: hooks, non-Error throws, database-side aborts (serialization failure, deadlock,
 * statement_timeout, terminated backend), propagation mixes, controllers (HttpException,
 * Observable handlers with useInterceptor).
 */
import {
  BadRequestException,
  Controller,
  INestApplication,
  Injectable,
  Post,
} from '@nestjs/common';
import type { Queue } from 'bull';
import request from 'supertest';
import { defer, from, mergeMap, timer, map } from 'rxjs';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  Propagation,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
  TransactionRunner,
  UnexpectedRollbackError,
} from '../src';
import { itOnPostgres, uniqueName } from './support/env';
import { createOutboxTable } from './support/outbox-table';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  waitFor,
} from './support/lib-app';
import { Order } from './support/order.entity';
import { watchProcessFailures } from './support/process-failures';
import { backendId, dbQuery, killBackend } from './support/db';

const Q = uniqueName('rt-tx');
const TABLE = 'tx_redteam_outbox2';
const failures = watchProcessFailures();
afterAll(() => failures.dispose());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

@Injectable()
class Svc {
  constructor(
    readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(Q) readonly q: TransactionAwareQueue<any>,
  ) {}

  @Transactional()
  async throwing(value: unknown, label: string, jobId: string) {
    await this.tx.getRepository(Order).save({ label });
    await this.q.add({ label }, { jobId });
    throw value;
  }

  @Transactional({ propagation: Propagation.RequiresNew })
  async requiresNew(fn: () => Promise<unknown>) {
    return fn();
  }

  @Transactional({ propagation: Propagation.Nested })
  async nested(fn: () => Promise<unknown>) {
    return fn();
  }

  @Transactional()
  async required(fn: () => Promise<unknown>) {
    return fn();
  }
}

@Controller('rt')
class RtController {
  constructor(
    private readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(Q)
    private readonly q: TransactionAwareQueue<any>,
  ) {}

  @Post('http-exception')
  @Transactional()
  async httpException() {
    await this.tx.getRepository(Order).save({ label: 'rt-http-exc' });
    await this.q.add({}, { jobId: 'rt-http-exc-' + process.pid });
    throw new BadRequestException('nope');
  }

  @Post('throw-string')
  @Transactional()
  async throwString() {
    await this.tx.getRepository(Order).save({ label: 'rt-http-str' });
    await this.q.add({}, { jobId: 'rt-http-str-' + process.pid });
    throw 'a string';
  }

  @Post('observable-ok')
  @Transactional({ useInterceptor: true })
  observableOk() {
    return timer(30).pipe(
      mergeMap(() =>
        defer(async () => {
          const o = await this.tx
            .getRepository(Order)
            .save({ label: 'rt-obs-ok' });
          await this.q.add({ id: o.id }, { jobId: 'rt-obs-ok-' + process.pid });
          return o.id;
        }),
      ),
      map((id) => ({ id })),
    );
  }

  @Post('observable-error')
  @Transactional({ useInterceptor: true })
  observableError() {
    return timer(30).pipe(
      mergeMap(() =>
        from(
          (async () => {
            await this.tx.getRepository(Order).save({ label: 'rt-obs-err' });
            await this.q.add({}, { jobId: 'rt-obs-err-' + process.pid });
            throw new BadRequestException('obs');
          })(),
        ),
      ),
    );
  }
}

describe('redteam: transaction semantics', () => {
  let app: INestApplication;
  let svc: Svc;
  let bull: Queue;
  let ds: DataSource;
  let runner: TransactionRunner;

  const count = async (label: string) =>
    Number(
      (
        await dbQuery(
          ds,
          `SELECT count(*)::int AS n FROM tx_spec_orders WHERE label = $1`,
          [label],
        )
      )[0].n,
    );

  beforeAll(async () => {
    await createOutboxTable(TABLE);
    app = await createLibApp({
      providers: [Svc],
      controllers: [RtController],
      queues: [{ name: Q }],
      options: {
        afterCommitTimeoutMs: 2000,
        outbox: { tableName: TABLE, relay: { enabled: false } },
      },
    });
    svc = app.get(Svc);
    bull = bullQueue(app, Q);
    ds = app.get(DataSource);
    runner = app.get(TransactionRunner);
    await dbQuery(
      ds,
      `CREATE TABLE IF NOT EXISTS rt_counter (id int primary key, n int not null)`,
    );
    await dbQuery(
      ds,
      `INSERT INTO rt_counter VALUES (1, 0), (2, 0) ON CONFLICT DO NOTHING`,
    );
  });

  afterAll(() => closeLibApp(app, [Q]));

  it.each([
    ['a string', 'boom'],
    ['undefined', undefined],
    ['null', null],
    ['a number', 42],
    ['a plain object', { code: 7 }],
  ])(
    'throwing %s rolls back (no row, no job) and rejects with that same value',
    async (_l, value) => {
      const label = uniqueName('nonerr');
      const jobId = uniqueName('nonerr-job');
      let caught: unknown = Symbol('none');
      await svc.throwing(value, label, jobId).then(
        () => (caught = 'resolved'),
        (e) => (caught = e),
      );
      expect(caught).toBe(value);
      expect(await count(label)).toBe(0);
      await sleep(100);
      expect(await bull.getJob(jobId)).toBeNull();
    },
  );

  it('failing hooks (sync throw, rejected promise, thrown string/undefined) never reach the caller; later steps still run', async () => {
    const after = uniqueName('after-failing-hooks');
    const ran: string[] = [];
    const failuresBefore = runner.stats.hookFailures;
    await expect(
      svc.tx.withTransaction(async () => {
        await svc.tx.afterCommit(() => {
          throw new Error('sync');
        });
        await svc.tx.afterCommit(() => Promise.reject(new Error('async')));
        await svc.tx.afterCommit(() => {
          throw 'str';
        });
        await svc.tx.afterCommit(() => Promise.reject(undefined));
        await svc.q.add({}, { jobId: after });
        await svc.tx.afterCommit(() => void ran.push('last'));
        return 'ok';
      }),
    ).resolves.toBe('ok');
    expect(ran).toEqual(['last']);
    expect(runner.stats.hookFailures - failuresBefore).toBe(4);
    expect(await bull.getJob(after)).not.toBeNull();
  });

  it('afterCommit hooks can add jobs, open new transactions (REQUIRED, REQUIRES_NEW, NESTED) and register more hooks', async () => {
    const ids = [
      uniqueName('h-plain'),
      uniqueName('h-req'),
      uniqueName('h-new'),
      uniqueName('h-nested'),
      uniqueName('h-inner'),
    ];
    const label = uniqueName('hook-tx');
    const ran: string[] = [];
    await svc.tx.withTransaction(async () => {
      await svc.tx.afterCommit(async () => {
        expect(svc.tx.isActive).toBe(false);
        await svc.q.add({}, { jobId: ids[0] }); // no tx: enqueued at once
        await svc.required(async () => {
          await svc.tx.getRepository(Order).save({ label });
          await svc.q.add({}, { jobId: ids[1] });
          await svc.tx.afterCommit(() => void ran.push('inner-hook'));
        });
        await svc.requiresNew(async () => {
          await svc.q.add({}, { jobId: ids[2] });
        });
        await svc.nested(async () => {
          await svc.q.add({}, { jobId: ids[3] });
        });
        await svc.tx.afterCommit(async () => {
          ran.push('hook-in-hook');
          await svc.q.add({}, { jobId: ids[4] });
        });
      });
    });
    expect(ran).toEqual(['inner-hook', 'hook-in-hook']);
    expect(await count(label)).toBe(1);
    for (const id of ids) expect(await bull.getJob(id)).not.toBeNull();
  });

  it('afterRollback hook that opens a transaction and adds a job: the job exists, the rolled-back one does not', async () => {
    const rolled = uniqueName('rb-dropped');
    const comp = uniqueName('rb-comp');
    await expect(
      svc.tx.withTransaction(async () => {
        await svc.q.add({}, { jobId: rolled });
        svc.tx.afterRollback(() =>
          svc.required(async () => {
            await svc.q.add({}, { jobId: comp });
          }),
        );
        throw new Error('rollback');
      }),
    ).rejects.toThrow('rollback');
    await waitFor(
      async () => (await bull.getJob(comp)) !== null,
      'compensating job',
      3000,
    );
    expect(await bull.getJob(rolled)).toBeNull();
  });

  it('SERIALIZABLE: a serialization failure (caught, then returned) enqueues nothing and rejects', async () => {
    await dbQuery(ds, `UPDATE rt_counter SET n = 0`);
    const jobs = [uniqueName('ser-a'), uniqueName('ser-b')];
    let gate!: () => void;
    const bothRead = new Promise<void>((r) => (gate = r));
    let reads = 0;
    const work = (i: number) =>
      svc.tx.withTransaction(
        async () => {
          const m = svc.tx.manager;
          const rows = await dbQuery(
            m,
            `SELECT sum(n)::int AS s FROM rt_counter`,
          );
          if (++reads === 2) gate();
          await bothRead;
          try {
            await dbQuery(m, `UPDATE rt_counter SET n = $1 WHERE id = $2`, [
              rows[0].s + 1,
              i + 1,
            ]);
          } catch {
            /* caught and returned */
          }
          await svc.q.add({}, { jobId: jobs[i] });
          return i;
        },
        { isolationLevel: 'SERIALIZABLE' },
      );
    const results = await Promise.allSettled([work(0), work(1)]);
    const ok = results.filter((r) => r.status === 'fulfilled');
    expect(ok).toHaveLength(1);
    const failed = results.findIndex((r) => r.status === 'rejected');
    await sleep(200);
    expect(await bull.getJob(jobs[failed])).toBeNull();
    expect(await bull.getJob(jobs[1 - failed])).not.toBeNull();
  });

  it('deadlock (40P01) caught and returned: loser rejects with UnexpectedRollbackError, no job; winner commits', async () => {
    const jobs = [uniqueName('dl-a'), uniqueName('dl-b')];
    let gate!: () => void;
    const bothLocked = new Promise<void>((r) => (gate = r));
    let locked = 0;
    const work = (i: number) =>
      svc.tx.withTransaction(async () => {
        const m = svc.tx.manager;
        await dbQuery(m, `UPDATE rt_counter SET n = n + 1 WHERE id = $1`, [
          i + 1,
        ]);
        if (++locked === 2) gate();
        await bothLocked;
        try {
          await dbQuery(m, `UPDATE rt_counter SET n = n + 1 WHERE id = $1`, [
            2 - i,
          ]);
        } catch {
          /* deadlock caught */
        }
        await svc.q.add({}, { jobId: jobs[i] });
        return i;
      });
    const results = await Promise.allSettled([work(0), work(1)]);
    const rejected = results.filter(
      (r) => r.status === 'rejected',
    ) as PromiseRejectedResult[];
    expect(rejected).toHaveLength(1);
    expect(rejected[0].reason).toBeInstanceOf(UnexpectedRollbackError);
    const loser = results.findIndex((r) => r.status === 'rejected');
    await sleep(200);
    expect(await bull.getJob(jobs[loser])).toBeNull();
    expect(await bull.getJob(jobs[1 - loser])).not.toBeNull();
  });

  itOnPostgres(
    'a statement timeout aborts a Postgres transaction; MySQL/MariaDB end only the statement (implicit-rollback.spec covers their timeout)',
  )(
    'statement_timeout caught and returned: UnexpectedRollbackError, no row, no job (plain and durable)',
    async () => {
      const label = uniqueName('stmt');
      const jobs = [uniqueName('stmt-p'), uniqueName('stmt-d')];
      await expect(
        svc.tx.withTransaction(async () => {
          const m = svc.tx.manager;
          await m.getRepository(Order).save({ label });
          await svc.q.add({}, { jobId: jobs[0] });
          await svc.q.add({}, { jobId: jobs[1], durable: true });
          await dbQuery(m, `SET LOCAL statement_timeout = 50`);
          await dbQuery(m, `SELECT pg_sleep(1)`).catch(() => undefined);
        }),
      ).rejects.toBeInstanceOf(UnexpectedRollbackError);
      expect(await count(label)).toBe(0);
      await sleep(200);
      for (const j of jobs) expect(await bull.getJob(j)).toBeNull();
    },
  );

  it.each([false, true])(
    'backend terminated mid transaction (durable=%s), error caught and returned: rejects, no row, no job, pool works after',
    async (durable) => {
      const label = uniqueName('term');
      const jobId = uniqueName('term-job');
      const outcome = await svc.tx
        .withTransaction(async () => {
          const m = svc.tx.manager;
          await m.getRepository(Order).save({ label });
          await svc.q.add({}, { jobId, durable });
          await killBackend(ds, await backendId(m));
          await dbQuery(m, `SELECT 1`).catch(() => undefined);
          return 'returned';
        })
        .then(
          (v) => ({ ok: true, v }),
          (e) => ({ ok: false, e }),
        );
      expect(outcome.ok).toBe(false);
      expect(await count(label)).toBe(0);
      await sleep(200);
      expect(await bull.getJob(jobId)).toBeNull();
      // the pool still serves transactions
      const after = uniqueName('term-after');
      await svc.tx.withTransaction(async () => {
        await svc.tx.getRepository(Order).save({ label: after });
      });
      expect(await count(after)).toBe(1);
    },
  );

  it('REQUIRES_NEW inside NESTED inside REQUIRED with concurrent siblings: failing NESTED drops only its own work', async () => {
    const j = {
      outer: uniqueName('p-outer'),
      sib: uniqueName('p-sib'),
      nested: uniqueName('p-nested'),
      rn: uniqueName('p-rn'),
      sib2: uniqueName('p-sib2'),
    };
    const labels = {
      outer: uniqueName('l-outer'),
      nested: uniqueName('l-nested'),
      rn: uniqueName('l-rn'),
      sib2: uniqueName('l-sib2'),
    };
    await svc.required(async () => {
      await svc.tx.getRepository(Order).save({ label: labels.outer });
      await svc.q.add({}, { jobId: j.outer });
      await Promise.all([
        svc
          .nested(async () => {
            await svc.tx.getRepository(Order).save({ label: labels.nested });
            await svc.q.add({}, { jobId: j.nested });
            await svc.requiresNew(async () => {
              await svc.tx.getRepository(Order).save({ label: labels.rn });
              await svc.q.add({}, { jobId: j.rn });
            });
            throw new Error('nested fails');
          })
          .catch(() => undefined),
        svc.q.add({}, { jobId: j.sib }),
        svc.nested(async () => {
          await svc.tx.getRepository(Order).save({ label: labels.sib2 });
          await svc.q.add({}, { jobId: j.sib2 });
        }),
      ]);
    });
    expect(await count(labels.outer)).toBe(1);
    expect(await count(labels.nested)).toBe(0);
    expect(await count(labels.rn)).toBe(1);
    expect(await count(labels.sib2)).toBe(1);
    expect(await bull.getJob(j.outer)).not.toBeNull();
    expect(await bull.getJob(j.sib)).not.toBeNull();
    expect(await bull.getJob(j.sib2)).not.toBeNull();
    expect(await bull.getJob(j.rn)).not.toBeNull();
    expect(await bull.getJob(j.nested)).toBeNull();
  });

  describe('controllers', () => {
    it('HttpException after add(): 400, no row, no job', async () => {
      const res = await request(await app.getUrl()).post('/rt/http-exception');
      expect(res.status).toBe(400);
      expect(await count('rt-http-exc')).toBe(0);
      await sleep(100);
      expect(await bull.getJob('rt-http-exc-' + process.pid)).toBeNull();
    });

    it('throwing a string after add(): 500, no row, no job', async () => {
      const res = await request(await app.getUrl()).post('/rt/throw-string');
      expect(res.status).toBe(500);
      expect(await count('rt-http-str')).toBe(0);
      await sleep(100);
      expect(await bull.getJob('rt-http-str-' + process.pid)).toBeNull();
    });

    it('Observable handler with useInterceptor: async work inside the stream is in the transaction and its job is enqueued before the response', async () => {
      // Rows of earlier runs share the label: start from none.
      await dbQuery(
        app.get(TransactionHost).manager,
        `DELETE FROM tx_spec_orders WHERE label IN ('rt-obs-ok', 'rt-obs-err')`,
      );
      const res = await request(await app.getUrl()).post('/rt/observable-ok');
      expect(res.status).toBe(201);
      expect(await count('rt-obs-ok')).toBe(1);
      const job = await bull.getJob('rt-obs-ok-' + process.pid);
      expect(job?.data).toEqual({ id: res.body.id });
    });

    it('Observable handler erroring with HttpException: 400, no row, no job', async () => {
      const res = await request(await app.getUrl()).post(
        '/rt/observable-error',
      );
      expect(res.status).toBe(400);
      expect(await count('rt-obs-err')).toBe(0);
      await sleep(100);
      expect(await bull.getJob('rt-obs-err-' + process.pid)).toBeNull();
    });
  });

  it('no unhandled rejection or uncaught exception', async () => {
    await sleep(200);
    expect(failures.unhandledRejections).toEqual([]);
    expect(failures.uncaughtExceptions).toEqual([]);
  });
});
