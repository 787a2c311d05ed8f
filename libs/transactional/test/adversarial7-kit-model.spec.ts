/**
 * adversarial7 (kit model): the same random programs run once against the testing kit
 * (`TransactionalTestingModule`, `adapter` = the lane's queue library) and once against the real
 * library on Postgres + Redis, and their observable outcomes are compared. README "Testing
 * kit": "It provides the same tokens, built from the real runner, `TransactionHost` and
 * `TransactionAwareQueue` over an in-memory transaction driver and in-memory queues, so commit,
 * rollback and savepoint semantics are production's." A unit test that passes on the kit must
 * behave the same in production: any difference below is a bug of one side.
 *
 * A program is a tree of `withTransaction` scopes (every propagation, sequential or concurrent
 * children, failing, caught or not) whose leaves add jobs (awaited, not awaited, addBulk, after
 * their scope ended), with generated, duplicate and invalid job ids, delay/priority/attempts,
 * data JSON cannot write, on three queues (whenNoTransaction 'enqueue' / 'warn' / 'throw'), and
 * register afterCommit / afterRollback hooks (that may add a job, throw, or be registered late).
 *
 * Compared: the outcome of every add() / addBulk() / hook registration (resolved id, or error
 * class and message), the root's outcome, the hooks that ran and their order, the jobs that
 * reached each queue (name, data, id, delay, priority, attempts), the queues' stats, and (kit
 * side) that `kit.dropped()` / `kit.deferred()` agree with what the queue really deferred.
 *
 * Runs: A7_RUNS (default 25).
 */
import { INestApplication } from '@nestjs/common';
import { Test, TestingModule } from '@nestjs/testing';
import fc from 'fast-check';
import { DataSource } from 'typeorm';
import {
  getTransactionAwareQueueToken,
  Propagation,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import {
  TransactionalTestingKit,
  TransactionalTestingModule,
} from '../src/testing';
import { itOnPostgres, uniqueName } from './support/env';
import { closeLibApp, createLibApp } from './support/lib-app';
import {
  nextMacrotask,
  ProcessFailures,
  watchProcessFailures,
} from './support/process-failures';
import { LIB_QUEUE } from './support/queue-kind';

const RUNS = Number(process.env.A7_RUNS ?? 25);
const SEED = process.env.A7_SEED ? Number(process.env.A7_SEED) : undefined;
/** How long work a program left running (hooks in the background, un-awaited adds) may take. */
const SETTLE_MS = 80;

const QUEUES = [
  { name: uniqueName('a7-enq'), whenNoTransaction: 'enqueue' as const },
  { name: uniqueName('a7-warn'), whenNoTransaction: 'warn' as const },
  { name: uniqueName('a7-throw'), whenNoTransaction: 'throw' as const },
];
const QUEUE_NAMES = QUEUES.map((q) => q.name);

type IdChoice = null | 'dupA' | 'dupB' | '42' | '0' | 'a:b' | 'x:y:z' | 7;
type DataChoice = 'ok' | 'bigint' | 'circular';

interface AddOp {
  kind: 'add';
  q: 0 | 1 | 2;
  /** `plain`: the wrapped queue's own add() (`queue.queue.add`), as user code may call it. */
  mode: 'await' | 'unawaited' | 'bulk' | 'late' | 'plain';
  named: boolean;
  id: IdChoice;
  /** addBulk only: the id of its second job. */
  id2: IdChoice;
  data: DataChoice;
  delay: number;
  priority: number;
  attempts: number;
  caught: boolean;
  label?: string;
}
interface HookOp {
  kind: 'hook';
  which: 'afterCommit' | 'afterRollback';
  throws: boolean;
  adds: boolean;
  late: boolean;
  label?: string;
}
interface ScopeOp {
  kind: 'scope';
  propagation: Propagation;
  concurrent: boolean;
  fail: boolean;
  caught: boolean;
  children: Op[];
  label?: string;
}
type Op = AddOp | HookOp | ScopeOp;

const idArb = fc.constantFrom<IdChoice>(
  null,
  null,
  null,
  'dupA',
  'dupA',
  'dupB',
  '42',
  '0',
  'a:b',
  'x:y:z',
  7,
);

const addArb = fc.record<AddOp>({
  kind: fc.constant('add'),
  q: fc.constantFrom(0, 0, 1, 2),
  mode: fc.constantFrom('await', 'await', 'unawaited', 'bulk', 'late', 'plain'),
  named: fc.boolean(),
  id: idArb,
  id2: idArb,
  data: fc.constantFrom('ok', 'ok', 'ok', 'ok', 'bigint', 'circular'),
  delay: fc.constantFrom(0, 0, 60_000),
  priority: fc.constantFrom(0, 0, 3),
  attempts: fc.constantFrom(0, 0, 4),
  caught: fc.boolean(),
});

const hookArb = fc.record<HookOp>({
  kind: fc.constant('hook'),
  which: fc.constantFrom('afterCommit', 'afterRollback'),
  throws: fc.constantFrom(false, false, true),
  adds: fc.boolean(),
  late: fc.constantFrom(false, false, false, true),
});

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

const { op: opArb } = fc.letrec<{ op: Op; scope: ScopeOp }>((tie) => ({
  op: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 5, arbitrary: addArb },
    { weight: 2, arbitrary: hookArb },
    { weight: 2, arbitrary: tie('scope') },
  ),
  scope: fc.record<ScopeOp>({
    kind: fc.constant('scope'),
    propagation: propagations,
    concurrent: fc.constantFrom(false, false, true),
    fail: fc.constantFrom(false, false, true),
    caught: fc.boolean(),
    children: fc.array(tie('op'), { maxLength: 3 }),
  }),
}));

const rootArb = fc.record<ScopeOp>({
  kind: fc.constant('scope'),
  propagation: propagations,
  concurrent: fc.constantFrom(false, false, true),
  fail: fc.constantFrom(false, false, true),
  caught: fc.constant(true),
  children: fc.array(opArb, { minLength: 1, maxLength: 4 }),
});

/** Gives every op a label, in tree order (deterministic, whatever the interleaving). */
function labelled(root: ScopeOp): ScopeOp {
  let n = 0;
  const walk = (op: Op): Op => {
    const label = `${op.kind[0]}${n++}`;
    if (op.kind === 'scope') {
      return { ...op, label, children: op.children.map(walk) };
    }
    return { ...op, label };
  };
  return walk(root) as ScopeOp;
}

function racy(op: Op): boolean {
  if (op.kind === 'add') return op.mode === 'unawaited' || op.mode === 'late';
  if (op.kind === 'hook') return false;
  return op.concurrent || op.children.some(racy);
}

function customIds(op: Op): boolean {
  if (op.kind === 'add') {
    return op.id !== null || (op.mode === 'bulk' && op.id2 !== null);
  }
  return op.kind === 'scope' && op.children.some(customIds);
}

function hasConcurrency(op: Op): boolean {
  return (
    op.kind === 'scope' &&
    (op.concurrent || op.children.some((child) => hasConcurrency(child)))
  );
}

class AppError extends Error {
  constructor(label: string) {
    super(`scope ${label} failed`);
    this.name = 'AppError';
  }
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

function describeError(error: unknown): string {
  if (!(error instanceof Error)) return `non-error: ${String(error)}`;
  const message = error.message.replace(UUID, '<uuid>');
  return `${error.constructor.name}: ${message}`;
}

function normaliseId(id: unknown): string {
  return String(id).replace(UUID, '<uuid>');
}

function jobData(label: string, data: DataChoice): Record<string, unknown> {
  const value: Record<string, unknown> = { l: label };
  if (data === 'bigint') value.n = BigInt(1);
  if (data === 'circular') value.self = value;
  return value;
}

function jobOpts(op: AddOp, id: IdChoice): Record<string, unknown> {
  const opts: Record<string, unknown> = {};
  if (id !== null) opts.jobId = id;
  if (op.delay) opts.delay = op.delay;
  if (op.priority) opts.priority = op.priority;
  if (op.attempts) opts.attempts = op.attempts;
  return opts;
}

/** What one side is driven through. */
interface Side {
  host: TransactionHost;
  queues: TransactionAwareQueue<any, any>[];
  /** How many jobs each queue holds now (kit: `kit.jobs()`; production: Redis). */
  visible(): Promise<number[]>;
}

/** What a program did, as a user could observe it. */
interface Observed {
  root: string;
  calls: Record<string, string>;
  hooks: string[];
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}
function gate(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

async function execute(
  side: Side,
  root: ScopeOp,
  /** Runs first in the root scope's body (production: the statement whose COMMIT fails). */
  prelude?: () => Promise<unknown>,
): Promise<Observed> {
  const calls: Record<string, string> = {};
  const hooks: string[] = [];
  const pending: Promise<unknown>[] = [];
  // NOTE: an add not awaited (or started late) outside a transaction reaches Redis when Redis
  // answers, the kit's queue at once; and with concurrent siblings the order of the steps is a
  // race: hooks of such programs do not compare what they see.
  const snapshots = !racy(root);
  const record = (label: string, promise: Promise<unknown>) =>
    promise.then(
      (value) => {
        calls[label] = `ok ${normaliseId(JSON.stringify(value))}`;
      },
      (error: unknown) => {
        calls[label] = `err ${describeError(error)}`;
        throw error;
      },
    );

  const runAdd = (op: AddOp): Promise<unknown> => {
    const queue = side.queues[op.q];
    const label = op.label!;
    const data = jobData(label, op.data);
    if (op.mode === 'plain') {
      // NOTE: data and ids the queue library itself refuses are left to
      // adversarial7-kit-bookkeeping.spec.ts: the in-memory queue takes them.
      const id = op.id === 'dupA' || op.id === 'dupB' ? op.id : null;
      return Promise.resolve()
        .then(() =>
          (queue.queue as any).add(
            `n-${label}`,
            { l: label, ...(id === null ? { auto: true } : {}) },
            jobOpts(op, id),
          ),
        )
        .then(() => 'plain job');
    }
    if (op.mode === 'bulk') {
      return queue.addBulk([
        {
          ...(op.named ? { name: `n-${label}` } : {}),
          data,
          opts: jobOpts(op, op.id),
        },
        {
          name: `n-${label}-2`,
          data: { l: `${label}-2` },
          opts: jobOpts(op, op.id2),
        },
      ] as any);
    }
    return op.named
      ? queue.add(`n-${label}`, data, jobOpts(op, op.id) as any)
      : queue.add(data, jobOpts(op, op.id) as any);
  };

  const runHookBody = async (op: HookOp, afterTransaction: boolean) => {
    // NOTE: README: hooks run "in registration order together with the queue flushes (a job
    // added before a hook reaches Redis before the hook runs)": what the queues hold when a
    // hook of a transaction runs is part of the outcome.
    hooks.push(
      `${op.which}:${op.label}` +
        (afterTransaction ? ` sees ${(await side.visible()).join('/')}` : ''),
    );
    if (op.adds) {
      await record(
        `${op.label}-add`,
        side.queues[0].add(`hook-${op.label}`, { l: `${op.label}-job` }),
      ).catch(() => undefined);
    }
    if (op.throws) throw new Error(`hook ${op.label} failed`);
  };

  const registerHook = (op: HookOp): Promise<unknown> => {
    try {
      const active = side.host.isActive && snapshots;
      if (op.which === 'afterCommit') {
        return side.host.afterCommit(
          () => runHookBody(op, active),
          `hook ${op.label}`,
        );
      }
      side.host.afterRollback(
        () => runHookBody(op, active),
        `hook ${op.label}`,
      );
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  };

  /** Runs `op` in the current scope; `late` collects work to start once the scope ended. */
  const runOp = async (op: Op, late: Deferred[]): Promise<void> => {
    if (op.kind === 'scope') {
      const attempt = runScope(op);
      if (op.caught) await attempt.catch(() => undefined);
      else await attempt;
      return;
    }
    const isLate = op.kind === 'add' ? op.mode === 'late' : op.late;
    if (isLate) {
      const wait = gate();
      late.push(wait);
      pending.push(
        (async () => {
          await wait.promise;
          await record(
            op.label!,
            op.kind === 'add' ? runAdd(op) : registerHook(op),
          );
        })().catch(() => undefined),
      );
      return;
    }
    const call = record(
      op.label!,
      op.kind === 'add' ? runAdd(op) : registerHook(op),
    );
    if (op.kind === 'add' && op.mode === 'unawaited') {
      pending.push(call.catch(() => undefined));
      return;
    }
    if (op.kind === 'add' && op.caught) await call.catch(() => undefined);
    else await call;
  };

  const runScope = async (op: ScopeOp): Promise<void> => {
    const late: Deferred[] = [];
    const attempt = side.host.withTransaction(
      async () => {
        if (op === root && prelude) await prelude();
        if (op.concurrent) {
          const results = await Promise.allSettled(
            op.children.map((child) => runOp(child, late)),
          );
          const failed = results.find(
            (r): r is PromiseRejectedResult => r.status === 'rejected',
          );
          if (failed) throw failed.reason;
        } else {
          for (const child of op.children) await runOp(child, late);
        }
        if (op.fail) throw new AppError(op.label!);
      },
      { propagation: op.propagation },
    );
    try {
      await attempt;
      calls[op.label!] = 'ok';
    } catch (error) {
      calls[op.label!] = `err ${describeError(error)}`;
      throw error;
    } finally {
      for (const wait of late) wait.resolve();
    }
  };

  const rootOutcome = await runScope(root).then(
    () => 'ok',
    (error: unknown) => `err ${describeError(error)}`,
  );
  // NOTE: late work and un-awaited adds settle; then whatever they scheduled.
  for (let i = 0; i < 5; i++) {
    await Promise.all(pending.splice(0));
    await nextMacrotask();
  }
  return { root: rootOutcome, calls, hooks };
}

interface JobView {
  queue: number;
  name: string;
  data: unknown;
  id: string;
  delay: number;
  priority: number;
  attempts: number;
}

function viewJob(
  queue: number,
  job: { id?: unknown; name: string; data: any; opts: any },
  generated: (id: string) => boolean,
): JobView {
  // NOTE: a plain add() without a jobId gets the queue library's own id (Bull and BullMQ: a
  // counter; the kit: `<queue>:<n>`).
  const id = job.data?.auto ? '<auto>' : String(job.id);
  return {
    queue,
    name: job.name,
    data: job.data,
    id: generated(id) ? '<generated>' : id,
    delay: Number(job.opts?.delay ?? 0) || 0,
    priority: Number(job.opts?.priority ?? 0) || 0,
    attempts: Number(job.opts?.attempts ?? 1) || 1,
  };
}

function sortJobs(jobs: JobView[]): JobView[] {
  return [...jobs].sort((a, b) =>
    JSON.stringify([a.queue, a.data, a.id, a.name]).localeCompare(
      JSON.stringify([b.queue, b.data, b.id, b.name]),
    ),
  );
}

/**
 * In programs with concurrent siblings, which of two adds with one jobId wins is a race: the
 * winner's name, data and options are masked (before sorting, or its data would decide where the
 * job sorts; seed -1581204757 compared the kit's and production's jobs in opposite order).
 */
function raceFree(jobs: JobView[], concurrent: boolean): JobView[] {
  if (!concurrent) return jobs;
  return jobs.map((job) =>
    job.id.startsWith('dup') || job.id === '42' || job.id === '7'
      ? {
          ...job,
          name: '<race>',
          data: '<race>',
          delay: -1,
          priority: -1,
          attempts: -1,
        }
      : job,
  );
}

interface Outcome extends Observed {
  jobs: JobView[];
  stats: Record<string, number>[];
  unhandled: string[];
}

const isGenerated = (id: string) => /^<uuid>$/.test(normaliseId(id));

type StatsKey = 'deferred' | 'enqueued' | 'failed' | 'droppedOnRollback';
const STATS: StatsKey[] = [
  'deferred',
  'enqueued',
  'failed',
  'droppedOnRollback',
];

function statsOf(queue: TransactionAwareQueue<any, any>) {
  return Object.fromEntries(
    STATS.map((key) => [key, queue.stats[key]]),
  ) as Record<StatsKey, number>;
}

function statsDelta(
  before: Record<StatsKey, number>[],
  after: Record<StatsKey, number>[],
) {
  return after.map((stats, i) =>
    Object.fromEntries(STATS.map((key) => [key, stats[key] - before[i][key]])),
  );
}

const BULL_STATES = [
  'waiting',
  'delayed',
  'paused',
  'active',
  'completed',
  'failed',
];
const BULLMQ_STATES = [...BULL_STATES, 'prioritized', 'waiting-children'];

describe(`adversarial7: testing kit (${LIB_QUEUE}) and production run the same programs alike`, () => {
  let app: INestApplication;
  let real: Side;
  let failures: ProcessFailures;

  beforeAll(async () => {
    app = await createLibApp({ queues: QUEUES, listen: false, poolSize: 10 });
    real = {
      host: app.get(TransactionHost),
      visible: () =>
        Promise.all(
          real.queues.map(
            async (queue) =>
              (
                await (queue.queue as any).getJobs(
                  LIB_QUEUE === 'bull' ? BULL_STATES : BULLMQ_STATES,
                )
              ).length,
          ),
        ),
      queues: QUEUE_NAMES.map((name) =>
        app.get(getTransactionAwareQueueToken(name), { strict: false }),
      ),
    };
    failures = watchProcessFailures();
  });

  afterAll(async () => {
    failures?.dispose();
    await closeLibApp(app, QUEUE_NAMES);
  });

  async function runReal(
    program: ScopeOp,
    prelude?: () => Promise<unknown>,
  ): Promise<Outcome> {
    for (const queue of real.queues) {
      await (queue.queue as any).obliterate({ force: true });
    }
    const before = real.queues.map(statsOf);
    failures.unhandledRejections.length = 0;
    const observed = await execute(real, program, prelude);
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const jobs: JobView[] = [];
    for (const [i, queue] of real.queues.entries()) {
      const raw = queue.queue as any;
      const found = await raw.getJobs(
        LIB_QUEUE === 'bull' ? BULL_STATES : BULLMQ_STATES,
      );
      for (const job of found) jobs.push(viewJob(i, job, isGenerated));
    }
    return {
      ...observed,
      jobs: sortJobs(raceFree(jobs, hasConcurrency(program))),
      stats: statsDelta(before, real.queues.map(statsOf)),
      unhandled: failures.unhandledRejections.map(describeError),
    };
  }

  async function runKit(
    program: ScopeOp,
    commitFailure?: Error,
  ): Promise<Outcome & { kitBookkeeping: unknown }> {
    const moduleRef: TestingModule = await Test.createTestingModule({
      imports: [
        TransactionalTestingModule.forRoot({
          adapter: LIB_QUEUE,
          queues: QUEUES.map((q) => ({ ...q })),
        }),
      ],
    }).compile();
    await moduleRef.init();
    try {
      const kit = moduleRef.get(TransactionalTestingKit);
      const side: Side = {
        host: moduleRef.get(TransactionHost),
        visible: async () => QUEUE_NAMES.map((name) => kit.jobs(name).length),
        queues: QUEUE_NAMES.map((name) =>
          moduleRef.get(getTransactionAwareQueueToken(name)),
        ),
      };
      failures.unhandledRejections.length = 0;
      if (commitFailure) kit.failNextCommit(commitFailure);
      const observed = await execute(side, program);
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      const jobs = QUEUE_NAMES.flatMap((name, i) =>
        kit.jobs(name).map((job) => viewJob(i, job, isGenerated)),
      );
      const stats = side.queues.map(statsOf);
      return {
        ...observed,
        jobs: sortJobs(raceFree(jobs, hasConcurrency(program))),
        stats: stats.map((s) => ({ ...s })),
        unhandled: failures.unhandledRejections.map(describeError),
        // NOTE: README: dropped() lists the jobs their rollback dropped, deferred() those
        // waiting for a commit: once every transaction has ended, none waits, and the queue's
        // own count of dropped jobs is the kit's.
        kitBookkeeping: QUEUE_NAMES.map((name, i) => ({
          deferredLeft: kit.deferred(name).length,
          dropped: kit.dropped(name).length,
          droppedOnRollback: stats[i].droppedOnRollback,
        })),
      };
    } finally {
      await moduleRef.close();
    }
  }

  it('gives the same outcomes, jobs and hook runs on the kit as in production', async () => {
    const coverage = {
      programs: 0,
      withJobs: 0,
      hookSnapshots: 0,
      withErrors: 0,
    };
    await fc.assert(
      fc.asyncProperty(rootArb, async (generated) => {
        const program = labelled(generated);
        const { kitBookkeeping, ...kit } = await runKit(program);
        const prod = await runReal(program);
        expect(kit).toEqual(prod);
        coverage.programs++;
        if (prod.jobs.length > 0) coverage.withJobs++;
        if (prod.hooks.some((h) => h.includes(' sees ')))
          coverage.hookSnapshots++;
        if (Object.values(prod.calls).some((c) => c.startsWith('err '))) {
          coverage.withErrors++;
        }
        if (process.env.A7_DEBUG) console.log(JSON.stringify(prod));
        // NOTE: README: deferred() lists "jobs waiting for a commit", dropped() jobs "dropped by
        // rollbacks": once every transaction has ended nothing waits, and what the kit shows as
        // dropped is what the queue itself dropped (a job add() refused was never deferred).
        // The kit keeps its deferred jobs by id, so jobs sharing a jobId count once there.
        const shared = customIds(program);
        expect(kitBookkeeping).toEqual(
          (
            kitBookkeeping as { dropped: number; droppedOnRollback: number }[]
          ).map((q) => ({
            deferredLeft: 0,
            dropped: shared ? q.dropped : q.droppedOnRollback,
            droppedOnRollback: q.droppedOnRollback,
          })),
        );
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: false },
    );
    // NOTE: the model compared something: committed jobs and refusals (hooks that looked at the
    // queues are not in every sample of 25 programs: about one run in three had none).
    expect(coverage.withJobs).toBeGreaterThan(0);
    expect(coverage.withErrors).toBeGreaterThan(0);
  });

  /**
   * A COMMIT the database refuses (a deferred unique constraint) against `kit.failNextCommit()`,
   * which README "Testing kit" offers for that case: "the runner rolls back, drops the deferred
   * jobs and rethrows `error` to the caller". Programs open no transaction but the root's (no
   * REQUIRES_NEW, and nothing that suspends it), so the failing COMMIT is the root's on both
   * sides.
   */
  itOnPostgres('MariaDB has no deferred constraints to fail a COMMIT with')(
    'fails a commit on the kit (failNextCommit) as production fails it (a deferred constraint)',
    async () => {
      await app
        .get(DataSource)
        .query(
          'CREATE TABLE IF NOT EXISTS a7_commit_fail (id int, CONSTRAINT a7_commit_fail_u ' +
            'UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)',
        );
      const oneTransaction = (op: Op): Op =>
        op.kind !== 'scope'
          ? op
          : {
              ...op,
              propagation: [
                Propagation.RequiresNew,
                Propagation.NotSupported,
                Propagation.Never,
              ].includes(op.propagation)
                ? Propagation.Nested
                : op.propagation,
              children: op.children.map(oneTransaction),
            };
      let failedCommits = 0;
      await fc.assert(
        fc.asyncProperty(rootArb, async (generated) => {
          const program = labelled(
            oneTransaction({
              ...generated,
              propagation: Propagation.Required,
            }) as ScopeOp,
          );
          const sentinel = new Error('COMMIT refused');
          const { kitBookkeeping, ...kit } = await runKit(program, sentinel);
          const prod = await runReal(program, () =>
            real.host.manager.query(
              'INSERT INTO a7_commit_fail (id) VALUES (1), (1)',
            ),
          );
          // NOTE: the error itself is the database's in production and the test's in the kit.
          const commitError = (outcome: string) =>
            /COMMIT refused|a7_commit_fail_u/.test(outcome)
              ? '<commit refused>'
              : outcome;
          const normalise = (outcome: Outcome) => ({
            ...outcome,
            root: commitError(outcome.root),
            calls: Object.fromEntries(
              Object.entries(outcome.calls).map(([k, v]) => [
                k,
                commitError(v),
              ]),
            ),
          });
          if (prod.root.includes('a7_commit_fail_u')) failedCommits++;
          expect(normalise(kit)).toEqual(normalise(prod));
          void kitBookkeeping;
        }),
        { numRuns: RUNS, seed: SEED, endOnFailure: false },
      );
      expect(failedCommits).toBeGreaterThan(0);
    },
  );
});
