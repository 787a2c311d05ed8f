/**
 * Model-based randomized test of the library's promise: a job exists if and only if the work of
 * the transaction that added it committed, and nothing committed is lost.
 *
 * fast-check generates trees of scopes (every propagation, sequential and concurrent siblings,
 * application errors and database errors, caught or not) whose leaves write a row and add its
 * job (plain or durable, with a generated or an explicit, possibly shared, job id) and register
 * after-commit / after-rollback hooks. Each tree runs against real Postgres and Redis; the
 * database is the model's ground truth: for every leaf, its row committed ⇔ its job is in Redis
 * ⇔ its after-commit hook ran once; an after-rollback hook ran once ⇔ its row was written in a
 * transaction and did not commit. No unhandled rejection may occur.
 *
 * `npm test` runs MODEL_RUNS (default 300) cases. A failure prints fast-check's seed and path;
 * replay it with MODEL_SEED=<seed> MODEL_PATH=<path> npx jest libs/transactional/test/model.spec.ts.
 * A long run: MODEL_RUNS=5000 npx jest libs/transactional/test/model.spec.ts.
 */
import { INestApplication, Injectable } from '@nestjs/common';
import fc from 'fast-check';
import { DataSource } from 'typeorm';
import {
  createOutboxMigration,
  InjectTransactionAwareQueue,
  Propagation,
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { onMariaDb, uniqueName, testDataSourceOptions } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  findJob,
} from './support/lib-app';
import { dbQuery, deadlockVictim } from './support/db';
import {
  ProcessFailures,
  watchProcessFailures,
} from './support/process-failures';

const QUEUE = uniqueName('model');
const TABLE = 'tx_spec_model_outbox';
const RUNS = Number(process.env.MODEL_RUNS ?? 300);
/** The relay's grace period: the fast path enqueues durable jobs, the relay what it did not. */
const GRACE_MS = 300;

/** A leaf: writes a row, adds its job, optionally registers a hook paired with the row. */
interface WriteOp {
  kind: 'write';
  durable: boolean;
  /** Index into a small pool of explicit job ids shared within the case; none = generated. */
  sharedId: number | null;
  hook: 'none' | 'afterCommit' | 'afterRollback';
  /** More jobs of one `addBulk()` call (each with its own row), alternating durable and plain. */
  bulk: number;
  /**
   * How the row's INSERT reaches the database (Postgres; MariaDB always uses parameters): with
   * parameters, as a literal (node-postgres' simple protocol) or as a named prepared statement. A transaction's BEGIN goes out with its first statement.
   */
  via: 'parameters' | 'literal' | 'named';
  caught: boolean;
}

/** A statement that fails in the database (Postgres aborts the transaction); always caught. */
interface DbErrorOp {
  kind: 'dbError';
  caught: true;
}

/** A scope with a propagation, its children run in order or concurrently. */
interface ScopeOp {
  kind: 'scope';
  propagation: Propagation;
  concurrent: boolean;
  fail: boolean;
  caught: boolean;
  children: Op[];
}

type Op = WriteOp | DbErrorOp | ScopeOp;

const propagations = fc.constantFrom(
  Propagation.Required,
  Propagation.Required,
  Propagation.Nested,
  Propagation.Nested,
  Propagation.RequiresNew,
  Propagation.Supports,
  Propagation.NotSupported,
  Propagation.Mandatory,
  Propagation.Never,
);

const { op: opArbitrary } = fc.letrec<{ op: Op; scope: ScopeOp }>((tie) => ({
  op: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    {
      weight: 5,
      arbitrary: fc.record<WriteOp>({
        kind: fc.constant('write'),
        durable: fc.boolean(),
        sharedId: fc.option(fc.integer({ min: 0, max: 2 }), { freq: 3 }),
        hook: fc.constantFrom('none', 'afterCommit', 'afterRollback'),
        bulk: fc.constantFrom(0, 0, 0, 1, 2),
        via: fc.constantFrom('parameters', 'literal', 'named'),
        caught: fc.boolean(),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.constant<DbErrorOp>({ kind: 'dbError', caught: true }),
    },
    { weight: 3, arbitrary: tie('scope') },
  ),
  scope: fc.record<ScopeOp>({
    kind: fc.constant('scope'),
    propagation: propagations,
    concurrent: fc.boolean(),
    fail: fc.boolean(),
    caught: fc.boolean(),
    children: fc.array(tie('op'), { maxLength: 4 }),
  }),
}));

const rootArbitrary = fc.record<ScopeOp>({
  kind: fc.constant('scope'),
  propagation: propagations,
  concurrent: fc.boolean(),
  fail: fc.boolean(),
  caught: fc.constant(true),
  children: fc.array(opArbitrary, { minLength: 1, maxLength: 5 }),
});

/** What one leaf did, as observed while it ran. */
interface Written {
  label: string;
  op: WriteOp;
  inTransaction: boolean;
  /** Job id `add()` resolved with; unset when it rejected. */
  jobId?: string;
  addFailed: boolean;
  /** Postgres error code of a rejected `add()` (durable mode writes the outbox row). */
  addError?: string;
}

class AppError extends Error {}

@Injectable()
class ModelRunner {
  constructor(
    readonly host: TransactionHost,
    readonly dataSource: DataSource,
    @InjectTransactionAwareQueue(QUEUE)
    readonly queue: TransactionAwareQueue<{ label: string }>,
  ) {}
}

/** Runs one generated tree and records what each leaf did and which hooks ran. */
class CaseRun {
  readonly written: Written[] = [];
  readonly hooksRan = new Map<string, number>();
  private next = 0;

  constructor(
    private readonly id: string,
    private readonly runner: ModelRunner,
  ) {}

  run(op: Op): Promise<void> {
    switch (op.kind) {
      case 'write':
        return this.write(op);
      case 'dbError':
        // NOTE: a failed statement aborts a Postgres transaction; MySQL/MariaDB roll back the
        // whole transaction on a deadlock, and only the statement on most other errors.
        if (onMariaDb && this.runner.host.isActive) {
          return deadlockVictim(
            this.runner.host.manager,
            this.runner.dataSource,
          );
        }
        return dbQuery(
          this.runner.host.manager,
          onMariaDb
            ? 'SELECT no_such_column FROM tx_spec_orders'
            : 'SELECT 1 / 0',
        ).then(() => undefined);
      case 'scope':
        return this.runner.host.withTransaction(
          async () => {
            await this.children(op);
            if (op.fail) throw new AppError('scope failed');
          },
          { propagation: op.propagation },
        );
    }
  }

  private async children(scope: ScopeOp) {
    const runChild = (child: Op) =>
      this.run(child).catch((error: unknown) => {
        if (!child.caught) throw error;
      });
    if (!scope.concurrent) {
      for (const child of scope.children) await runChild(child);
      return;
    }
    const results = await Promise.allSettled(scope.children.map(runChild));
    const failure = results.find((r) => r.status === 'rejected');
    if (failure) throw (failure as PromiseRejectedResult).reason;
  }

  private async insert(via: WriteOp['via'], label: string) {
    const { manager } = this.runner.host;
    // NOTE: the id is given: on MariaDB TypeORM's uuid column has no default (dbQuery writes
    // gen_random_uuid() as UUID() there).
    const text = `INSERT INTO tx_spec_orders (id, label) VALUES (gen_random_uuid(), $1)`;
    if (onMariaDb || via === 'parameters') {
      await dbQuery(manager, text, [label]);
    } else if (via === 'literal') {
      // NOTE: labels are letters, digits and dashes.
      await manager.query(
        `INSERT INTO tx_spec_orders (id, label) VALUES (gen_random_uuid(), '${label}')`,
      );
    } else {
      // NOTE: TypeORM hands a query config to node-postgres as it is. Through TypeORM, not the
      // raw client: the statement gate of concurrent NESTED scopes is on TypeORM's query.
      await manager.query({
        name: 'model_insert',
        text,
        values: [label],
      } as unknown as string);
    }
  }

  private async write(op: WriteOp) {
    const { host, queue } = this.runner;
    const inTransaction = host.isActive;
    const jobs = Array.from({ length: op.bulk + 1 }, (_, i) => {
      const label = `${this.id}-${++this.next}`;
      const written: Written = {
        label,
        op: i === 0 ? op : { ...op, durable: !op.durable, sharedId: null },
        inTransaction,
        addFailed: false,
      };
      this.written.push(written);
      return written;
    });
    for (const { label } of jobs) await this.insert(op.via, label);
    const toJob = ({ label, op: jobOp }: Written) => ({
      data: { label },
      opts: {
        durable: jobOp.durable,
        ...(jobOp.sharedId === null
          ? {}
          : { jobId: `${this.id}-shared-${jobOp.sharedId}` }),
      },
    });
    try {
      const ids =
        jobs.length === 1
          ? [await queue.add(toJob(jobs[0]).data, toJob(jobs[0]).opts)]
          : await queue.addBulk(jobs.map(toJob));
      ids.forEach((id, i) => (jobs[i].jobId = id));
    } catch (error) {
      for (const written of jobs) {
        written.addFailed = true;
        written.addError =
          (error as { driverError?: { code?: string } }).driverError?.code ??
          String(error);
      }
      throw error;
    }
    for (const { label, op: jobOp } of jobs) {
      const ran = () =>
        this.hooksRan.set(label, (this.hooksRan.get(label) ?? 0) + 1);
      if (jobOp.hook === 'afterCommit') await host.afterCommit(ran);
      if (jobOp.hook === 'afterRollback') host.afterRollback(ran);
    }
  }
}

describe('model: a job exists if and only if its transaction committed', () => {
  let app: INestApplication;
  let model: ModelRunner;
  // NOTE: on the real process: a spec's own `process` never sees these events.
  let failures: ProcessFailures | undefined;

  beforeAll(async () => {
    const dataSource = new DataSource(testDataSourceOptions());
    await dataSource.initialize();
    await dbQuery(dataSource, `DROP TABLE IF EXISTS ${TABLE}`);
    const Migration = createOutboxMigration({ tableName: TABLE });
    const queryRunner = dataSource.createQueryRunner();
    await new Migration().up(queryRunner);
    await queryRunner.release();
    await dataSource.destroy();
    app = await createLibApp({
      providers: [ModelRunner],
      queues: [{ name: QUEUE }],
      listen: false,
      poolSize: 30,
      options: {
        plainQueueInTransaction: 'throw',
        outbox: {
          tableName: TABLE,
          markBatchDelayMs: 5,
          relay: { enabled: false, graceMs: GRACE_MS },
        },
      },
    });
    model = app.get(ModelRunner);
    failures = watchProcessFailures();
  });

  afterAll(async () => {
    failures?.dispose();
    await closeLibApp(app, [QUEUE]);
  });

  /** The property, and a counter of committed rows (a run whose inserts all failed checks nothing). */
  function modelProperty() {
    const bull = bullQueue(app, QUEUE);
    const outbox = app.get(TransactionalOutbox);
    const counts = { rowsCommitted: 0 };
    const property = fc.asyncProperty(rootArbitrary, async (root) => {
      const run = new CaseRun(uniqueName('m'), model);
      await run.run(root).catch(() => undefined);
      // Durable jobs the fast path did not enqueue (and mark) are the relay's: once the marking
      // is done, or the grace period is over, run it until it is idle.
      const deadline = Date.now() + GRACE_MS + 200;
      while ((await outbox.stats()).pending > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      while ((await outbox.relayOnce()) > 0);

      const labels = run.written.map((w) => w.label);
      const committed = new Set<string>(
        (
          await dbQuery(
            model.host.manager,
            `SELECT label FROM tx_spec_orders WHERE label = ANY($1)`,
            [labels],
          )
        ).map((row: { label: string }) => row.label),
      );
      counts.rowsCommitted += committed.size;
      const expectedJobs = new Map<string, Set<string>>();
      for (const w of run.written) {
        const isCommitted = committed.has(w.label);
        const where = `${w.label} (${JSON.stringify(w.op)}, in transaction: ${w.inTransaction})`;
        if (w.addFailed && isCommitted) {
          throw new Error(`${where}: add() failed but its row committed`);
        }
        // An add() fails only where its transaction was already aborted by a failed statement
        // (Postgres 25P02; MariaDB: the library refuses statements of a transaction the database
        // rolled back); anything else (a duplicate job id, say) is the library's doing.
        if (
          w.addFailed &&
          w.addError !== '25P02' &&
          !w.addError?.startsWith('TransactionAbortedError')
        ) {
          throw new Error(`${where}: add() failed with ${w.addError}`);
        }
        if (w.jobId !== undefined) {
          const labelsOfJob = expectedJobs.get(w.jobId) ?? new Set<string>();
          if (isCommitted) labelsOfJob.add(w.label);
          expectedJobs.set(w.jobId, labelsOfJob);
        }
        const ran = run.hooksRan.get(w.label) ?? 0;
        if (w.jobId === undefined) {
          if (ran !== 0) throw new Error(`${where}: hook ran without an add`);
          continue;
        }
        const expectedRuns =
          w.op.hook === 'afterCommit'
            ? Number(isCommitted)
            : w.op.hook === 'afterRollback'
              ? Number(!isCommitted && w.inTransaction)
              : 0;
        if (ran !== expectedRuns) {
          throw new Error(
            `${where}: ${w.op.hook} hook ran ${ran} time(s), expected ${expectedRuns} ` +
              `(row ${isCommitted ? 'committed' : 'absent'})`,
          );
        }
      }
      for (const [jobId, labelsOfJob] of expectedJobs) {
        const job = await findJob(bull, jobId);
        if ((job !== null) !== labelsOfJob.size > 0) {
          throw new Error(
            `job ${jobId}: ${job ? 'in Redis' : 'absent'}, but ` +
              `${labelsOfJob.size} committed row(s) added it`,
          );
        }
        if (job && !labelsOfJob.has(job.data.label)) {
          throw new Error(
            `job ${jobId} carries ${job.data.label}, whose row did not commit`,
          );
        }
      }
      const unhandled = failures?.unhandledRejections ?? [];
      if (unhandled.length > 0) {
        throw new Error(`unhandled rejection: ${String(unhandled[0])}`);
      }
    });
    return { property, counts };
  }

  it(`should hold for ${RUNS} random trees of scopes, jobs, hooks and errors`, async () => {
    const { property, counts } = modelProperty();
    await fc.assert(property, {
      numRuns: RUNS,
      seed: process.env.MODEL_SEED ? Number(process.env.MODEL_SEED) : undefined,
      path: process.env.MODEL_PATH,
      endOnFailure: !process.env.MODEL_SHRINK,
      // A case that hangs (a deadlock) fails with its seed instead of stalling the suite.
      timeout: 20_000,
      interruptAfterTimeLimit: Number(
        process.env.MODEL_TIME_LIMIT_MS ?? 600_000,
      ),
    });
    expect(counts.rowsCommitted).toBeGreaterThan(0);
  }, 900_000);

  // NOTE: trees that once failed, replayed by their seed and path (same generators, same tree).
  it.each([
    {
      seed: -1554923074,
      path: '4',
      why: 'MariaDB: a REQUIRES_NEW scope inside the root, both with durable jobs; the inner grace UPDATE read the pending index and waited 50 s on the outer transaction',
    },
  ])(
    'replays seed $seed path $path ($why)',
    async ({ seed, path }) => {
      const { property } = modelProperty();
      await fc.assert(property, {
        numRuns: 1,
        seed,
        path,
        endOnFailure: true,
        timeout: 20_000,
      });
    },
    60_000,
  );
});
