/**
 * adversarial6 (scopes): a model-based randomized test of the promise "a job exists if and only
 * if its transaction (and every enclosing savepoint scope) committed; nothing committed is lost",
 * over what model.spec.ts does not generate:
 *
 * - scopes opened through the decorator (`@Transactional({ propagation })` on a provider), through
 *   `withTransaction` with an isolation level, and through TypeORM's `manager.transaction(fn)`;
 * - two queues, one registered durable and one plain (with per-job `durable: true` as well);
 * - jobs with delays and priorities (checked in Redis), `addBulk`, shared explicit job ids;
 * - adds not awaited, adds from a promise left running after its scope returned (must be refused
 *   with TransactionClosedError when the scope was in a transaction), adds from afterCommit and
 *   afterRollback hooks (registered inside REQUIRES_NEW / NESTED scopes: they must run with no
 *   transaction bound, so the enclosing transaction's outcome must not touch them);
 * - child scopes left running (detached) by their parent;
 * - slow statements (`pg_sleep`), awaited or left running: one left running holds the connection,
 *   so the RELEASE, ROLLBACK TO or COMMIT of its scope waits behind it, and code left running
 *   meanwhile acts while that end is on its way (the window of seed -2069806213, path 68);
 * - flows (TransactionAwareFlowProducer) on the BullMQ lane.
 *
 * The database is the ground truth: a row a leaf inserted committed ⇔ its job is in Redis ⇔ (for
 * durable jobs added in a transaction) its outbox row exists. No unhandled rejection may occur.
 */
import { BullModule as BullMQModule } from '@nestjs/bullmq';
import { INestApplication, Injectable } from '@nestjs/common';
import fc from 'fast-check';
import { DataSource } from 'typeorm';
import {
  getTransactionAwareQueueToken,
  InjectTransactionAwareFlowProducer,
  Propagation,
  Transactional,
  TransactionalModule,
  TransactionalOutbox,
  TransactionAwareFlowProducer,
  TransactionAwareQueue,
  TransactionClosedError,
  TransactionHost,
} from '../src';
import { dbQuery, FAILING_SQL } from './support/db';
import { onMariaDb, uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  findJob,
} from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';
import {
  nextMacrotask,
  ProcessFailures,
  watchProcessFailures,
} from './support/process-failures';
import { LIB_QUEUE } from './support/queue-kind';

const PLAIN = uniqueName('a6-plain');
const DURABLE = uniqueName('a6-durable');
const FLOWQ = uniqueName('a6-flowq');
const FLOWS = uniqueName('a6-flows');
const TABLE = 'tx_spec_a6_outbox';
const RUNS = Number(process.env.A6_RUNS ?? 250);
const GRACE_MS = 300;
const WITH_FLOWS = LIB_QUEUE === 'bullmq';

type QueueChoice = 'plain' | 'durable' | 'plainAsDurable';

interface WriteOp {
  kind: 'write';
  queue: QueueChoice;
  sharedId: number | null;
  delay: number;
  priority: number;
  /** await the add, leave it running (kept by the test), or addBulk of two jobs. */
  mode: 'await' | 'unawaited' | 'bulk';
  /** A job added by a hook registered next to the row. */
  hook: 'none' | 'afterCommitAdd' | 'afterRollbackAdd';
  /** A job added by a promise of this leaf left running until the enclosing scope has ended. */
  late: boolean;
  caught: boolean;
}
interface DbErrorOp {
  kind: 'dbError';
  caught: true;
}
interface FlowOp {
  kind: 'flow';
  caught: boolean;
}
/** `SELECT pg_sleep(ms)` on the scope's manager, awaited or left running (kept by the test). */
interface SlowOp {
  kind: 'slow';
  ms: number;
  awaited: boolean;
  caught: true;
}
interface ScopeOp {
  kind: 'scope';
  propagation: Propagation;
  via: 'decorator' | 'withTransaction' | 'managerTransaction';
  isolation: 'READ COMMITTED' | 'REPEATABLE READ' | 'SERIALIZABLE' | null;
  /** Children in order, or at once: Promise.allSettled, or Promise.all (fails fast, leaving the
   * others running while the scope ends). */
  concurrent: 'no' | 'allSettled' | 'all';
  fail: boolean;
  caught: boolean;
  /** Left running by its parent (not awaited; the test awaits it at the end). */
  detached: boolean;
  children: Op[];
}
type Op = WriteOp | DbErrorOp | FlowOp | SlowOp | ScopeOp;

const propagations = fc.constantFrom(
  Propagation.Required,
  Propagation.Nested,
  Propagation.Nested,
  Propagation.RequiresNew,
  Propagation.Supports,
  Propagation.NotSupported,
  Propagation.Mandatory,
  Propagation.Never,
);

const writeArb = fc.record<WriteOp>({
  kind: fc.constant('write'),
  queue: fc.constantFrom('plain', 'durable', 'plainAsDurable'),
  sharedId: fc.option(fc.integer({ min: 0, max: 1 }), { freq: 3 }),
  delay: fc.constantFrom(0, 0, 60_000),
  priority: fc.constantFrom(0, 0, 3),
  mode: fc.constantFrom('await', 'await', 'unawaited', 'bulk'),
  hook: fc.constantFrom('none', 'none', 'afterCommitAdd', 'afterRollbackAdd'),
  late: fc.constantFrom(false, false, false, true),
  caught: fc.boolean(),
});

const slowArb = fc.record<SlowOp>({
  kind: fc.constant('slow'),
  ms: fc.constantFrom(2, 10, 30),
  awaited: fc.boolean(),
  caught: fc.constant(true),
});

const { op: opArb } = fc.letrec<{ op: Op; scope: ScopeOp }>((tie) => ({
  op: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 5, arbitrary: writeArb },
    {
      weight: 1,
      arbitrary: fc.constant<DbErrorOp>({ kind: 'dbError', caught: true }),
    },
    {
      weight: 1,
      arbitrary: slowArb,
    },
    {
      weight: WITH_FLOWS ? 1 : 0,
      arbitrary: fc.record<FlowOp>({
        kind: fc.constant('flow'),
        caught: fc.boolean(),
      }),
    },
    { weight: 3, arbitrary: tie('scope') },
  ),
  scope: fc.record<ScopeOp>({
    kind: fc.constant('scope'),
    propagation: propagations,
    via: fc.constantFrom('decorator', 'withTransaction', 'managerTransaction'),
    isolation: fc.constantFrom(
      null,
      null,
      'READ COMMITTED',
      'REPEATABLE READ',
      'SERIALIZABLE',
    ),
    concurrent: fc.constantFrom('no', 'allSettled', 'all'),
    fail: fc.boolean(),
    caught: fc.boolean(),
    detached: fc.constantFrom(false, false, false, false, true),
    children: fc.array(tie('op'), { maxLength: 3 }),
  }),
}));

const rootArb = fc.record<ScopeOp>({
  kind: fc.constant('scope'),
  propagation: propagations,
  via: fc.constantFrom('decorator', 'withTransaction'),
  isolation: fc.constant(null),
  concurrent: fc.constantFrom('no', 'allSettled', 'all'),
  fail: fc.boolean(),
  caught: fc.constant(true),
  detached: fc.constant(false),
  children: fc.array(opArb, { minLength: 1, maxLength: 4 }),
});

/**
 * Trees aimed at the ends of NESTED scopes: savepoints under savepoints, children left running
 * (detached, or by a fail-fast Promise.all) and slow statements, so that code acts while an
 * enclosing scope's RELEASE, ROLLBACK TO or COMMIT is on its way. The broad trees above reach
 * these windows rarely (one failure in CI in hundreds of runs); these reach them often.
 */
const { op: endsOpArb } = fc.letrec<{ op: Op; scope: ScopeOp }>((tie) => ({
  op: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 4, arbitrary: writeArb },
    {
      weight: 3,
      arbitrary: slowArb,
    },
    {
      weight: 1,
      arbitrary: fc.constant<DbErrorOp>({ kind: 'dbError', caught: true }),
    },
    { weight: 4, arbitrary: tie('scope') },
  ),
  scope: fc.record<ScopeOp>({
    kind: fc.constant('scope'),
    propagation: fc.constantFrom(
      Propagation.Nested,
      Propagation.Nested,
      Propagation.Nested,
      Propagation.Required,
    ),
    via: fc.constantFrom('decorator', 'withTransaction', 'managerTransaction'),
    isolation: fc.constant(null),
    concurrent: fc.constantFrom('no', 'no', 'allSettled', 'all'),
    fail: fc.boolean(),
    caught: fc.boolean(),
    detached: fc.boolean(),
    children: fc.array(tie('op'), { maxLength: 3 }),
  }),
}));

const endsRootArb = fc.record<ScopeOp>({
  kind: fc.constant('scope'),
  propagation: fc.constant(Propagation.Required),
  via: fc.constantFrom('decorator', 'withTransaction'),
  isolation: fc.constant(null),
  concurrent: fc.constantFrom('no', 'allSettled', 'all'),
  fail: fc.constantFrom(false, false, true),
  caught: fc.constant(true),
  detached: fc.constant(false),
  children: fc.array(endsOpArb, { minLength: 1, maxLength: 4 }),
});

class AppError extends Error {}

/** One job the case added (or tried to), and what must hold for it. */
interface JobRecord {
  /** The row whose commit decides the job (for hook jobs: the leaf's row). */
  label: string;
  /** The label the job carries. */
  jobLabel: string;
  queue: 'plain' | 'durable' | 'flow';
  durable: boolean;
  inTransaction: boolean;
  origin:
    | 'write'
    | 'afterCommitAdd'
    | 'afterRollbackAdd'
    | 'late'
    | 'flowParent'
    | 'flowChild';
  explicitId?: string;
  delay: number;
  priority: number;
  id?: string;
  settled: boolean;
  error?: unknown;
  /** Set when the leaf's code ran inside a scope left running by its parent. */
  detached: boolean;
}

/** Scopes opened through the decorator: one method per propagation. */
@Injectable()
class Scopes {
  @Transactional({ propagation: Propagation.Required })
  required(fn: () => Promise<void>) {
    return fn();
  }
  @Transactional({ propagation: Propagation.RequiresNew })
  requiresNew(fn: () => Promise<void>) {
    return fn();
  }
  @Transactional({ propagation: Propagation.Nested })
  nested(fn: () => Promise<void>) {
    return fn();
  }
  @Transactional({ propagation: Propagation.Supports })
  supports(fn: () => Promise<void>) {
    return fn();
  }
  @Transactional({ propagation: Propagation.Mandatory })
  mandatory(fn: () => Promise<void>) {
    return fn();
  }
  @Transactional({ propagation: Propagation.Never })
  never(fn: () => Promise<void>) {
    return fn();
  }
  @Transactional({ propagation: Propagation.NotSupported })
  notSupported(fn: () => Promise<void>) {
    return fn();
  }
}

@Injectable()
class Flows {
  constructor(
    @InjectTransactionAwareFlowProducer(FLOWS)
    readonly producer: TransactionAwareFlowProducer,
  ) {}
}

const byPropagation: Record<Propagation, keyof Scopes> = {
  [Propagation.Required]: 'required',
  [Propagation.RequiresNew]: 'requiresNew',
  [Propagation.Nested]: 'nested',
  [Propagation.Supports]: 'supports',
  [Propagation.Mandatory]: 'mandatory',
  [Propagation.Never]: 'never',
  [Propagation.NotSupported]: 'notSupported',
} as any;

interface Ctx {
  host: TransactionHost;
  scopes: Scopes;
  plain: TransactionAwareQueue<any>;
  durable: TransactionAwareQueue<any>;
  flows?: TransactionAwareFlowProducer;
}

class CaseRun {
  readonly jobs: JobRecord[] = [];
  readonly labels: string[] = [];
  /** Everything left running; awaited (settled) before the checks. */
  readonly running: Promise<unknown>[] = [];
  private next = 0;

  constructor(
    private readonly id: string,
    private readonly ctx: Ctx,
  ) {}

  label(): string {
    const label = `${this.id}-${++this.next}`;
    this.labels.push(label);
    return label;
  }

  async run(op: Op, detached: boolean): Promise<void> {
    // NOTE: async, so that a synchronous throw (host.manager of an ended scope) is a rejection.
    switch (op.kind) {
      case 'write':
        return this.write(op, detached);
      case 'flow':
        return this.flow(detached);
      case 'dbError':
        return dbQuery(this.ctx.host.manager, FAILING_SQL).then(
          () => undefined,
        );
      case 'slow': {
        const slow = dbQuery(
          this.ctx.host.manager,
          `SELECT pg_sleep(${op.ms / 1000})`,
        ).then(() => undefined);
        if (op.awaited) return slow;
        this.running.push(slow.catch(() => undefined));
        return;
      }
      case 'scope':
        return this.scope(op, detached);
    }
  }

  private scope(op: ScopeOp, detached: boolean): Promise<void> {
    const isDetached = detached || op.detached;
    const body = async () => {
      await this.children(op, isDetached);
      if (op.fail) throw new AppError('scope failed');
    };
    const { host, scopes } = this.ctx;
    if (op.via === 'managerTransaction' && host.isActive) {
      return host.manager.transaction(() => body());
    }
    if (op.via === 'withTransaction' || op.via === 'managerTransaction') {
      return host.withTransaction(body, {
        propagation: op.propagation,
        ...(op.isolation ? { isolationLevel: op.isolation } : {}),
      });
    }
    return scopes[byPropagation[op.propagation]](body);
  }

  private async children(scope: ScopeOp, detached: boolean) {
    const failFast = scope.concurrent === 'all';
    const runChild = (child: Op) => {
      // Children of a fail-fast Promise.all may outlive their scope: as if detached.
      const childDetached =
        detached || failFast || (child.kind === 'scope' && child.detached);
      const promise = this.run(child, childDetached).catch((error: unknown) => {
        if (!child.caught) throw error;
      });
      if (failFast) this.running.push(promise.catch(() => undefined));
      if (child.kind === 'scope' && child.detached) {
        // Left running: the parent does not wait; the test does.
        this.running.push(promise.catch(() => undefined));
        return Promise.resolve();
      }
      return promise;
    };
    if (scope.concurrent === 'no') {
      for (const child of scope.children) await runChild(child);
      return;
    }
    if (failFast) {
      await Promise.all(scope.children.map(runChild));
      return;
    }
    const results = await Promise.allSettled(scope.children.map(runChild));
    const failure = results.find((r) => r.status === 'rejected');
    if (failure) throw (failure as PromiseRejectedResult).reason;
  }

  private record(
    partial: Omit<JobRecord, 'settled' | 'detached'>,
    detached: boolean,
    promise: Promise<string>,
  ): Promise<void> {
    const record: JobRecord = { ...partial, settled: false, detached };
    this.jobs.push(record);
    return promise.then(
      (id) => {
        record.id = id;
        record.settled = true;
      },
      (error: unknown) => {
        record.error = error;
        record.settled = true;
        throw error;
      },
    );
  }

  private queueOf(choice: QueueChoice) {
    return choice === 'durable' ? this.ctx.durable : this.ctx.plain;
  }

  private async write(op: WriteOp, detached: boolean) {
    const { host } = this.ctx;
    const inTransaction = host.isActive;
    const queue = this.queueOf(op.queue);
    const durable = op.queue !== 'plain';
    const labels =
      op.mode === 'bulk' ? [this.label(), this.label()] : [this.label()];
    for (const label of labels) {
      await dbQuery(
        host.manager,
        'INSERT INTO tx_spec_orders (id, label) VALUES (gen_random_uuid(), $1)',
        [label],
      );
    }
    const optsFor = (i: number) => ({
      ...(op.queue === 'plainAsDurable' ? { durable: true } : {}),
      ...(op.delay ? { delay: op.delay } : {}),
      ...(op.priority ? { priority: op.priority } : {}),
      ...(op.sharedId !== null && i === 0
        ? {
            jobId: `${this.id}-shared-${op.queue === 'durable' ? 'd' : 'p'}-${op.sharedId}`,
          }
        : {}),
    });
    const base = (label: string, i: number) => ({
      label,
      jobLabel: label,
      queue: (op.queue === 'durable'
        ? 'durable'
        : 'plain') as JobRecord['queue'],
      durable,
      inTransaction,
      origin: 'write' as const,
      explicitId: optsFor(i).jobId,
      delay: op.delay,
      priority: op.priority,
    });
    let adding: Promise<void>;
    if (op.mode === 'bulk') {
      const bulk = queue.addBulk(
        labels.map((label, i) => ({
          name: 'bulk',
          data: { label },
          opts: optsFor(i),
        })),
      );
      adding = Promise.all(
        labels.map((label, i) =>
          this.record(
            base(label, i),
            detached,
            bulk.then((ids) => ids[i]),
          ),
        ),
      ).then(() => undefined);
    } else {
      adding = this.record(
        base(labels[0], 0),
        detached,
        queue.add('one', { label: labels[0] }, optsFor(0)),
      );
    }
    if (op.mode === 'unawaited') {
      this.running.push(adding.catch(() => undefined));
    } else {
      await adding;
    }
    const hookQueue = this.ctx.plain;
    const hookLabel = labels[0];
    if (op.hook === 'afterCommitAdd') {
      const jobLabel = `${hookLabel}-ac`;
      await host.afterCommit(() => {
        const added = this.record(
          {
            ...base(hookLabel, 1),
            jobLabel,
            queue: 'plain',
            durable: false,
            origin: 'afterCommitAdd',
            explicitId: undefined,
            delay: 0,
            priority: 0,
          },
          detached,
          hookQueue.add('hook', { label: jobLabel }),
        );
        this.running.push(added.catch(() => undefined));
        return added;
      });
    }
    if (op.hook === 'afterRollbackAdd') {
      const jobLabel = `${hookLabel}-ar`;
      host.afterRollback(() => {
        const added = this.record(
          {
            ...base(hookLabel, 1),
            jobLabel,
            queue: 'plain',
            durable: false,
            origin: 'afterRollbackAdd',
            explicitId: undefined,
            delay: 0,
            priority: 0,
          },
          detached,
          hookQueue.add('hook', { label: jobLabel }),
        );
        this.running.push(added.catch(() => undefined));
        return added;
      });
    }
    if (op.late) {
      // A promise of this leaf that adds once the test has seen the enclosing scope end.
      const jobLabel = `${hookLabel}-late`;
      const gate = this.lateGate();
      const late = gate.then(() =>
        this.record(
          {
            ...base(hookLabel, 1),
            jobLabel,
            queue: 'plain',
            durable: false,
            origin: 'late',
            explicitId: undefined,
            delay: 0,
            priority: 0,
          },
          detached,
          hookQueue.add('late', { label: jobLabel }),
        ),
      );
      this.running.push(late.catch(() => undefined));
    }
  }

  /** Resolved by `openGates()` once the root scope has settled. */
  private gates: (() => void)[] = [];
  private lateGate(): Promise<void> {
    return new Promise<void>((resolve) => this.gates.push(resolve));
  }
  openGates() {
    for (const open of this.gates) open();
  }

  private async flow(detached: boolean) {
    const { host, flows } = this.ctx;
    const inTransaction = host.isActive;
    const label = this.label();
    await dbQuery(
      host.manager,
      'INSERT INTO tx_spec_orders (id, label) VALUES (gen_random_uuid(), $1)',
      [label],
    );
    const base = {
      label,
      queue: 'flow' as const,
      durable: false,
      inTransaction,
      delay: 0,
      priority: 0,
    };
    const ids = flows!.add({
      name: 'parent',
      queueName: FLOWQ,
      data: { label },
      children: [
        { name: 'child', queueName: FLOWQ, data: { label: `${label}-c` } },
      ],
    });
    await Promise.all([
      this.record(
        { ...base, jobLabel: label, origin: 'flowParent' },
        detached,
        ids.then((i) => i.id),
      ),
      this.record(
        { ...base, jobLabel: `${label}-c`, origin: 'flowChild' },
        detached,
        ids.then((i) => i.children![0].id),
      ),
    ]);
  }
}

const abortedError = (error: unknown) => {
  const code = (error as { driverError?: { code?: string } })?.driverError
    ?.code;
  const name = (error as Error)?.constructor?.name ?? '';
  return (
    code === '25P02' ||
    name === 'TransactionAbortedError' ||
    name === 'UnexpectedRollbackError'
  );
};

function suite(coalesceRoundTrips: boolean) {
  describe(`adversarial6: random trees of scopes, hooks, late and unawaited adds (${LIB_QUEUE}, coalesceRoundTrips ${coalesceRoundTrips})`, () => {
    let app: INestApplication;
    let ctx: Ctx;
    let failures: ProcessFailures | undefined;

    beforeAll(async () => {
      await createOutboxTable(TABLE);
      app = await createLibApp({
        providers: [Scopes, ...(WITH_FLOWS ? [Flows] : [])],
        queues: [{ name: PLAIN }, { name: DURABLE, durable: true }],
        listen: false,
        poolSize: 30,
        imports: WITH_FLOWS
          ? [
              BullMQModule.registerFlowProducer({ name: FLOWS }),
              TransactionalModule.registerFlowProducer({ name: FLOWS }),
            ]
          : [],
        options: {
          plainQueueInTransaction: 'throw',
          coalesceRoundTrips,
          outbox: {
            tableName: TABLE,
            markBatchDelayMs: 5,
            relay: { enabled: false, graceMs: GRACE_MS },
          },
        },
      });
      ctx = {
        host: app.get(TransactionHost),
        scopes: app.get(Scopes),
        plain: app.get(getTransactionAwareQueueToken(PLAIN)),
        durable: app.get(getTransactionAwareQueueToken(DURABLE)),
        flows: WITH_FLOWS ? app.get(Flows).producer : undefined,
      };
      failures = watchProcessFailures();
    });

    afterAll(async () => {
      failures?.dispose();
      if (WITH_FLOWS && app) {
        const { Queue } = await import('bullmq');
        const q = new Queue(FLOWQ, {
          connection: (bullQueue(app, PLAIN) as any).opts.connection,
        });
        await q.obliterate({ force: true }).catch(() => undefined);
        await q.close();
      }
      await closeLibApp(app, [PLAIN, DURABLE]);
    });

    it.each([
      ['random trees', rootArb],
      ['trees aimed at the ends of NESTED scopes', endsRootArb],
    ] as const)(
      `a job exists iff its row committed, over ${RUNS} %s`,
      async (_, trees) => {
        const plainBull = bullQueue(app, PLAIN);
        const durableBull = bullQueue(app, DURABLE);
        let flowQueue: any;
        if (WITH_FLOWS) {
          const { Queue } = await import('bullmq');
          flowQueue = new Queue(FLOWQ, {
            connection: (plainBull as any).opts.connection,
          });
        }
        const outbox = app.get(TransactionalOutbox);
        const ds = app.get(DataSource);
        const seen = new Map<string, number>();
        const count = (k: string) => seen.set(k, (seen.get(k) ?? 0) + 1);
        const property = fc.asyncProperty(trees, async (root) => {
          const run = new CaseRun(uniqueName('a6'), { ...ctx });
          await run.run(root, false).catch(() => undefined);
          run.openGates();
          // Everything left running settles (detached scopes may open more late gates).
          for (let i = 0; i < 5; i++) {
            await Promise.allSettled([...run.running]);
            run.openGates();
            await nextMacrotask();
          }
          await Promise.allSettled([...run.running]);
          const deadline = Date.now() + GRACE_MS + 300;
          while ((await outbox.stats()).pending > 0 && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
          while ((await outbox.relayOnce()) > 0);

          const committed = new Set<string>(
            (
              await dbQuery(
                ds,
                'SELECT label FROM tx_spec_orders WHERE label = ANY($1)',
                [run.labels],
              )
            ).map((r: { label: string }) => r.label),
          );
          const outboxRows: { label: string; dispatched: boolean }[] = (
            await dbQuery(
              ds,
              `SELECT data->>'label' AS label, dispatched_at IS NOT NULL AS dispatched FROM ${TABLE} WHERE data->>'label' = ANY($1)`,
              [run.labels],
            )
          ).map((r: any) => ({
            label: r.label,
            dispatched: !!Number(r.dispatched) || r.dispatched === true,
          }));

          const problems: string[] = [];
          const describeJob = (j: JobRecord) =>
            `${j.origin} ${j.jobLabel} on ${j.queue}${j.durable ? ' durable' : ''}` +
            `${j.explicitId ? ` id=${j.explicitId}` : ''}${j.detached ? ' detached' : ''}` +
            ` (in tx: ${j.inTransaction}, row ${committed.has(j.label) ? 'committed' : 'absent'})`;

          // Groups of (queue, job id) → labels of committed adders (the job must exist iff any).
          const expected = new Map<
            string,
            { job: JobRecord; committedLabels: Set<string>; any: JobRecord[] }
          >();
          for (const j of run.jobs) {
            count(
              `${j.origin}/${j.inTransaction ? 'tx' : 'notx'}/${committed.has(j.label) ? 'c' : 'rb'}/${j.error ? (j.error as Error).constructor.name : 'ok'}${j.detached ? '/detached' : ''}`,
            );
            if (!j.settled) {
              problems.push(`${describeJob(j)}: add() never settled`);
              continue;
            }
            const rowCommitted = committed.has(j.label);
            let mustExist: boolean;
            switch (j.origin) {
              case 'write':
              case 'flowParent':
              case 'flowChild':
                mustExist = rowCommitted;
                if (j.error !== undefined) {
                  // Code left running past its transaction's COMMIT is refused loudly: Postgres
                  // TransactionClosedError; MariaDB, whose statements run one at a time, may instead
                  // see the COMMIT end the transaction (TransactionAbortedError). Its row may have
                  // gone with the COMMIT (README "Work registered after its scope has ended").
                  const closed =
                    j.error instanceof TransactionClosedError ||
                    (onMariaDb &&
                      (j.error as Error)?.constructor?.name ===
                        'TransactionAbortedError');
                  if (rowCommitted && !(closed && j.detached)) {
                    problems.push(
                      `${describeJob(j)}: add() rejected (${String(j.error)}) but its row committed`,
                    );
                  }
                  if (!rowCommitted && !abortedError(j.error) && !closed) {
                    problems.push(
                      `${describeJob(j)}: add() rejected with ${String(j.error)}`,
                    );
                  }
                  continue;
                }
                break;
              case 'afterCommitAdd':
                mustExist = rowCommitted;
                break;
              case 'afterRollbackAdd':
                mustExist = !rowCommitted && j.inTransaction;
                break;
              case 'late':
                if (j.detached) {
                  // Its scope may still have been open when it ran: either refused, or it
                  // followed the leaf's transaction.
                  if (j.error !== undefined) continue;
                  mustExist = j.inTransaction ? rowCommitted : true;
                  break;
                }
                if (j.inTransaction) {
                  if (!(j.error instanceof TransactionClosedError)) {
                    problems.push(
                      `${describeJob(j)}: an add() after its scope ended ${
                        j.error
                          ? `rejected with ${String(j.error)}`
                          : `resolved with ${j.id}`
                      }, expected TransactionClosedError`,
                    );
                  }
                }
                if (j.error !== undefined) {
                  if (j.id)
                    problems.push(`${describeJob(j)}: rejected but has an id`);
                  continue;
                }
                // Added outside any transaction: enqueued at once.
                mustExist = !j.inTransaction;
                break;
            }
            if (j.error !== undefined) {
              if (mustExist)
                problems.push(
                  `${describeJob(j)}: add() rejected: ${String(j.error)}`,
                );
              continue;
            }
            const key = `${j.queue}:${j.id}`;
            const entry = expected.get(key) ?? {
              job: j,
              committedLabels: new Set<string>(),
              any: [],
            };
            entry.any.push(j);
            if (mustExist) entry.committedLabels.add(j.jobLabel);
            expected.set(key, entry);
          }
          for (const [key, entry] of expected) {
            const j = entry.job;
            const bull =
              j.queue === 'plain'
                ? plainBull
                : j.queue === 'durable'
                  ? durableBull
                  : flowQueue;
            const job = await findJob(bull, j.id!);
            const should = entry.committedLabels.size > 0;
            if ((job !== null) !== should) {
              problems.push(
                `job ${key}: ${job ? 'in Redis' : 'absent'}, expected ${should ? 'present' : 'absent'}; adders: ${entry.any
                  .map(describeJob)
                  .join('; ')}`,
              );
              continue;
            }
            if (!job) continue;
            if (!entry.committedLabels.has((job.data as any).label)) {
              problems.push(
                `job ${key} carries ${(job.data as any).label}, not a committed adder's`,
              );
            }
            if (!j.explicitId && j.origin === 'write') {
              const opts = job.opts as any;
              if (j.delay && opts.delay !== j.delay) {
                problems.push(
                  `job ${key}: delay ${opts.delay}, expected ${j.delay}`,
                );
              }
              if (j.priority && opts.priority !== j.priority) {
                problems.push(
                  `job ${key}: priority ${opts.priority}, expected ${j.priority}`,
                );
              }
            }
          }
          // The outbox: a row of a durable job added in a transaction exists iff that row committed;
          // none left pending.
          for (const row of outboxRows) {
            const j = run.jobs.find(
              (x) => x.jobLabel === row.label && x.origin === 'write',
            );
            if (j && j.inTransaction && !committed.has(row.label)) {
              problems.push(
                `outbox row of ${describeJob(j)} exists, its row did not commit`,
              );
            }
            if (!row.dispatched)
              problems.push(
                `outbox row of ${row.label} left pending after the relay`,
              );
          }
          for (const j of run.jobs) {
            if (
              j.origin === 'write' &&
              j.durable &&
              j.inTransaction &&
              j.error === undefined &&
              committed.has(j.label) &&
              !outboxRows.some((r) => r.label === j.jobLabel)
            ) {
              problems.push(`${describeJob(j)}: committed, but no outbox row`);
            }
          }
          const unhandled = failures?.unhandledRejections ?? [];
          if (unhandled.length > 0) {
            problems.push(`unhandled rejection: ${String(unhandled[0])}`);
            unhandled.length = 0;
          }
          if (problems.length > 0) throw new Error(problems.join('\n'));
        });
        try {
          await fc.assert(property, {
            numRuns: RUNS,
            seed: process.env.A6_SEED ? Number(process.env.A6_SEED) : undefined,
            path: process.env.A6_PATH,
            endOnFailure: !process.env.A6_SHRINK,
            timeout: 20_000,
            interruptAfterTimeLimit: Number(
              process.env.A6_TIME_LIMIT_MS ?? 12_000,
            ),
          });
        } finally {
          if (process.env.A6_STATS)
            console.log(
              [...seen]
                .sort()
                .map(([k, v]) => `${k}: ${v}`)
                .join('\n'),
            );
          await flowQueue?.close();
        }
      },
      120_000,
    );
  });
}

suite(true);
// On MariaDB the option changes nothing: run the model once there.
if (!onMariaDb) suite(false);
