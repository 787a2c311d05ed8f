/**
 * adversarial8 (flows): random BullMQ flow trees (depth, fan-out, children in other queues,
 * explicit ids, dependency-failure options, delays, priorities) added in scopes that commit, roll
 * back, roll back to a NESTED savepoint, or run concurrently, mixed with plain and durable
 * TransactionAwareQueue jobs. README "Flows": a flow exists whole iff its transaction committed;
 * never half. FC_RUNS raises the number of fast-check runs (default 6).
 */
import { BullModule } from '@nestjs/bullmq';
import { INestApplication } from '@nestjs/common';
import { FlowProducer, Queue } from 'bullmq';
import Redis from 'ioredis';
import * as fc from 'fast-check';
import { DataSource } from 'typeorm';
import {
  FlowJobIds,
  getTransactionAwareFlowProducerToken,
  getTransactionAwareQueueToken,
  Propagation,
  TransactionalError,
  TransactionalModule,
  TransactionAwareFlowProducer,
  TransactionAwareQueue,
  TransactionClosedError,
  TransactionHost,
} from '../src';
import { dbQuery } from './support/db';
import { uniqueName } from './support/env';
import { closeLibApp, createLibApp, waitFor } from './support/lib-app';
import { Order } from './support/order.entity';
import { createOutboxTable } from './support/outbox-table';
import {
  nextMacrotask,
  watchProcessFailures,
} from './support/process-failures';
import { describeBullMQOnly } from './support/queue-kind';

jest.setTimeout(20_000);

const RUNS = Number(process.env.FC_RUNS ?? 6);
const QUEUES = [
  uniqueName('a8f-a'),
  uniqueName('a8f-b'),
  uniqueName('a8f-c'),
] as const;
const PLAIN = uniqueName('a8f-plain');
const DURABLE = uniqueName('a8f-durable');
const FLOWS = uniqueName('a8f-flows');
const TABLE = 'tx_a8f_outbox';

/** A node of a generated flow tree (what the arbitrary builds; ids made unique per run). */
interface Tree {
  queue: number;
  explicitId: boolean;
  opts: Record<string, unknown>;
  children: Tree[];
}

// BullMQ refuses the dependency-failure options together: at most one per node.
const childOptsArb = fc
  .tuple(
    fc.record(
      {
        delay: fc.constantFrom(0, 50, 60_000),
        priority: fc.integer({ min: 1, max: 100 }),
        attempts: fc.integer({ min: 1, max: 3 }),
        lifo: fc.boolean(),
      },
      { requiredKeys: [] },
    ),
    fc.constantFrom(
      undefined,
      'failParentOnFailure',
      'ignoreDependencyOnFailure',
      'removeDependencyOnFailure',
      'continueParentOnFailure',
    ),
  )
  .map(([opts, dep]) => (dep ? { ...opts, [dep]: true } : opts));

const treeArb: fc.Arbitrary<Tree> = fc.letrec<{ node: Tree }>((tie) => ({
  node: fc.record<Tree>({
    queue: fc.integer({ min: 0, max: QUEUES.length - 1 }),
    explicitId: fc.boolean(),
    opts: childOptsArb as fc.Arbitrary<Record<string, unknown>>,
    children: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.constant<Tree[]>([]),
      fc.array(tie('node'), { maxLength: 3 }),
    ),
  }),
})).node as fc.Arbitrary<Tree>;

type Fate = 'commit' | 'rollback' | 'nested-rollback' | 'nested-then-outer-rb';
const fateArb = fc.constantFrom<Fate>(
  'commit',
  'rollback',
  'nested-rollback',
  'nested-then-outer-rb',
);

/** The BullMQ flow of a tree, with unique names and explicit ids where asked. */
function flowOf(tree: Tree, tag: string, path = 'r'): any {
  const opts: Record<string, unknown> = { ...tree.opts };
  // BullMQ: only a node with a parent has the dependency options; harmless on the root.
  if (tree.explicitId) opts.jobId = `${tag}-${path}`;
  return {
    name: `n-${path}`,
    queueName: QUEUES[tree.queue],
    data: { tag, path },
    opts,
    ...(tree.children.length
      ? {
          children: tree.children.map((c, i) => flowOf(c, tag, `${path}.${i}`)),
        }
      : {}),
  };
}

function nodes(ids: FlowJobIds): FlowJobIds[] {
  return [ids, ...(ids.children ?? []).flatMap(nodes)];
}

describeBullMQOnly('adversarial8: flows vs transactions (shared Redis)', () => {
  const failures = watchProcessFailures();
  let app: INestApplication;
  let host: TransactionHost;
  let flows: TransactionAwareFlowProducer;
  let plainQ: TransactionAwareQueue<any>;
  let durableQ: TransactionAwareQueue<any>;
  let queues: Map<string, Queue>;
  let redis: Redis;
  let db: DataSource;

  beforeAll(async () => {
    await createOutboxTable(TABLE);
    app = await createLibApp({
      queues: [
        ...QUEUES.map((name) => ({ name })),
        { name: PLAIN },
        { name: DURABLE, durable: true },
      ],
      imports: [
        BullModule.registerFlowProducer({ name: FLOWS }),
        TransactionalModule.registerFlowProducer({ name: FLOWS }),
      ],
      options: {
        outbox: { tableName: TABLE, relay: { pollIntervalMs: 100 } },
      },
      listen: false,
    });
    host = app.get(TransactionHost);
    flows = app.get(getTransactionAwareFlowProducerToken(FLOWS));
    plainQ = app.get(getTransactionAwareQueueToken(PLAIN));
    durableQ = app.get(getTransactionAwareQueueToken(DURABLE));
    db = app.get(DataSource);
    const connection = (app.get(`BullFlowProducer_${FLOWS}`) as FlowProducer)
      .opts.connection as any;
    queues = new Map(
      [...QUEUES, PLAIN, DURABLE].map((n) => [n, new Queue(n, { connection })]),
    );
    redis = new Redis({
      host: connection.host ?? '127.0.0.1',
      port: connection.port ?? 6379,
      db: connection.db ?? 0,
    });
  });

  afterAll(async () => {
    for (const q of queues?.values() ?? []) await q.close();
    redis?.disconnect();
    await closeLibApp(app, [...QUEUES, PLAIN, DURABLE]);
    failures.dispose();
  });

  const key = (queueName: string, id: string) => `bull:${queueName}:${id}`;
  const exists = async (n: FlowJobIds) =>
    (await redis.exists(key(n.queueName, n.id))) === 1;

  /** Describes how far a flow is from existing whole (empty: whole). */
  async function wholeProblems(ids: FlowJobIds, parent?: FlowJobIds) {
    const problems: string[] = [];
    const k = key(ids.queueName, ids.id);
    if (!(await exists(ids))) problems.push(`${k} missing`);
    if (parent) {
      const pk = await redis.hget(k, 'parentKey');
      if (pk !== key(parent.queueName, parent.id))
        problems.push(`${k} parentKey ${pk}`);
    }
    if (ids.children?.length) {
      const state = await queues.get(ids.queueName)!.getJobState(ids.id);
      if (state !== 'waiting-children') problems.push(`${k} state ${state}`);
      const deps = await redis.smembers(`${k}:dependencies`);
      const want = ids.children.map((c) => key(c.queueName, c.id)).sort();
      if (JSON.stringify(deps.sort()) !== JSON.stringify(want))
        problems.push(`${k} dependencies ${deps.length}/${want.length}`);
      for (const c of ids.children)
        problems.push(...(await wholeProblems(c, ids)));
    }
    return problems;
  }

  async function present(ids: FlowJobIds) {
    const found: string[] = [];
    for (const n of nodes(ids))
      if (await exists(n)) found.push(key(n.queueName, n.id));
    return found;
  }

  it('random flow trees in scopes that commit, roll back, or roll back a NESTED savepoint: whole iff committed', async () => {
    let checkedNodes = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.tuple(
            fc.array(treeArb, { minLength: 1, maxLength: 3 }),
            fateArb,
            fc.boolean(),
          ),
          {
            minLength: 1,
            maxLength: 4,
          },
        ),
        async (txs) => {
          const outcomes = await Promise.all(
            txs.map(async ([trees, fate, bulk], t) => {
              const tag = uniqueName(`p${t}`);
              const kept: FlowJobIds[] = [];
              const dropped: FlowJobIds[] = [];
              const add = async (
                list: Tree[],
                into: FlowJobIds[],
                sub: string,
              ) => {
                const fs = list.map((tree, i) =>
                  flowOf(tree, `${tag}-${sub}${i}`),
                );
                if (bulk) into.push(...(await flows.addBulk(fs)));
                else
                  into.push(
                    ...(await Promise.all(fs.map((f) => flows.add(f)))),
                  );
              };
              const error = await host
                .withTransaction(async () => {
                  await host.getRepository(Order).insert({ label: tag });
                  if (fate === 'commit') await add(trees, kept, 'k');
                  if (fate === 'rollback') {
                    await add(trees, dropped, 'd');
                    throw new Error('rollback');
                  }
                  if (fate === 'nested-rollback') {
                    await add(trees.slice(0, 1), kept, 'k');
                    await host
                      .withTransaction(
                        async () => {
                          await add(
                            trees.slice(1).length ? trees.slice(1) : trees,
                            dropped,
                            'n',
                          );
                          throw new Error('nested');
                        },
                        { propagation: Propagation.Nested },
                      )
                      .catch(() => undefined);
                  }
                  if (fate === 'nested-then-outer-rb') {
                    await host.withTransaction(
                      async () => add(trees, dropped, 'n'),
                      { propagation: Propagation.Nested },
                    );
                    throw new Error('outer');
                  }
                })
                .then(
                  () => undefined,
                  (e: unknown) => e,
                );
              return { tag, fate, kept, dropped, error };
            }),
          );
          for (const o of outcomes) {
            const rows = await host
              .getRepository(Order)
              .countBy({ label: o.tag });
            const committed =
              o.fate === 'commit' || o.fate === 'nested-rollback';
            expect({
              tag: o.tag,
              rows,
              error: o.error ? String(o.error) : undefined,
            }).toEqual({
              tag: o.tag,
              rows: committed ? 1 : 0,
              error: committed ? undefined : expect.any(String),
            });
            for (const ids of o.kept) {
              checkedNodes += nodes(ids).length;
              expect({
                fate: o.fate,
                root: ids.id,
                problems: await wholeProblems(ids),
              }).toEqual({
                fate: o.fate,
                root: ids.id,
                problems: [],
              });
            }
            for (const ids of o.dropped) {
              expect({ fate: o.fate, present: await present(ids) }).toEqual({
                fate: o.fate,
                present: [],
              });
            }
          }
        },
      ),
      { numRuns: RUNS },
    );
    expect(checkedNodes).toBeGreaterThan(0);
  });

  it('a flow reusing, as a child, the id of a child of another committed flow: whole, or at least reported (stats.failed)', async () => {
    const shared = uniqueName('shared-child');
    const first = await host.withTransaction(() =>
      flows.add({
        name: 'p1',
        queueName: QUEUES[0],
        data: {},
        children: [
          {
            name: 'c',
            queueName: QUEUES[1],
            data: {},
            opts: { jobId: shared },
          },
        ],
      }),
    );
    expect(await wholeProblems(first)).toEqual([]);
    const failedBefore = flows.stats.failed;
    const second = await host
      .withTransaction(() =>
        flows.add({
          name: 'p2',
          queueName: QUEUES[0],
          data: {},
          children: [
            {
              name: 'c',
              queueName: QUEUES[1],
              data: {},
              opts: { jobId: shared },
            },
            { name: 'own', queueName: QUEUES[2], data: {} },
          ],
        }),
      )
      .catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 100));
    if (second instanceof Error) {
      // refused inside the transaction: fine, as long as nothing of it exists
      return;
    }
    const ids = second as FlowJobIds;
    const problems = await wholeProblems(ids);
    // README "Flows": "in one BullMQ transaction (all of its jobs or none)"; a flow lost after
    // the commit is "logged, counted in stats.failed". A committed flow that is not whole must
    // at least be reported.
    expect({
      problems,
      reported: flows.stats.failed - failedBefore > 0,
    }).toEqual({ problems, reported: problems.length > 0 });
  });

  it('a flow whose parent id is that of an existing plain job, in one addBulk with a fresh flow: every committed flow is whole or counted failed', async () => {
    const existing = uniqueName('existing');
    await queues.get(QUEUES[0])!.add('plain', {}, { jobId: existing });
    const failedBefore = flows.stats.failed;
    const [a, b] = await host.withTransaction(() =>
      flows.addBulk([
        {
          name: 'dup-parent',
          queueName: QUEUES[0],
          data: {},
          opts: { jobId: existing },
          children: [{ name: 'c', queueName: QUEUES[1], data: {} }],
        },
        {
          name: 'fresh',
          queueName: QUEUES[2],
          data: {},
          children: [{ name: 'c', queueName: QUEUES[1], data: {} }],
        },
      ]),
    );
    await new Promise((r) => setTimeout(r, 100));
    expect(await wholeProblems(b)).toEqual([]);
    const aProblems = await wholeProblems(a);
    // the existing job is not a flow parent: BullMQ keeps it, the child must not dangle
    // under a parent that never waits for it, unless the failure is reported
    const reported = flows.stats.failed - failedBefore;
    expect({ aProblems, reported: reported > 0 }).toEqual({
      aProblems,
      reported: aProblems.length > 0,
    });
  });

  it('flows, plain and durable jobs in one transaction: all on commit, none on rollback or NESTED rollback', async () => {
    const tag = uniqueName('mixed');
    const flowOfTag = (s: string) => ({
      name: 'p',
      queueName: QUEUES[0],
      data: { s },
      children: [
        {
          name: 'c',
          queueName: QUEUES[1],
          data: {},
          opts: { delay: 60_000, priority: 5 },
        },
        {
          name: 'c',
          queueName: QUEUES[2],
          data: {},
          opts: { failParentOnFailure: true },
        },
      ],
    });
    const got: Record<
      string,
      { flow?: FlowJobIds; plain?: string; durable?: string }
    > = {
      commit: {},
      rollback: {},
      nested: {},
    };
    const addAll = async (into: (typeof got)[string], s: string) => {
      const [flow, plain, durable] = await Promise.all([
        flows.add(flowOfTag(`${tag}-${s}`)),
        plainQ.add('j', { s }),
        durableQ.add('j', { s }),
      ]);
      Object.assign(into, { flow, plain, durable });
    };
    await host.withTransaction(async () => {
      await addAll(got.commit, 'commit');
      await host
        .withTransaction(
          async () => {
            await addAll(got.nested, 'nested');
            throw new Error('nested');
          },
          { propagation: Propagation.Nested },
        )
        .catch(() => undefined);
    });
    await host
      .withTransaction(async () => {
        await addAll(got.rollback, 'rollback');
        throw new Error('rollback');
      })
      .catch(() => undefined);
    await waitFor(
      async () => !!(await queues.get(DURABLE)!.getJob(got.commit.durable!)),
      'the committed durable job',
      10_000,
    );
    expect(await wholeProblems(got.commit.flow!)).toEqual([]);
    expect(await queues.get(PLAIN)!.getJob(got.commit.plain!)).toBeTruthy();
    for (const s of ['rollback', 'nested'] as const) {
      expect(await present(got[s].flow!)).toEqual([]);
      expect(await queues.get(PLAIN)!.getJob(got[s].plain!)).toBeUndefined();
      expect(
        await queues.get(DURABLE)!.getJob(got[s].durable!),
      ).toBeUndefined();
    }
    const [{ n }] = await dbQuery(
      db,
      `SELECT count(*)::int AS n FROM ${TABLE} WHERE opts->>'jobId' = $1`,
      [got.rollback.durable],
    );
    expect(Number(n)).toBe(0);
  });

  it('a flow added after its scope ended (not awaited) is refused with TransactionClosedError and never reaches Redis', async () => {
    let late: Promise<FlowJobIds> | undefined;
    const tag = uniqueName('late');
    await host.withTransaction(async () => {
      late = (async () => {
        await new Promise((r) => setTimeout(r, 50));
        return flows.add({
          name: 'p',
          queueName: QUEUES[0],
          data: {},
          opts: { jobId: `${tag}-p` },
          children: [
            {
              name: 'c',
              queueName: QUEUES[1],
              data: {},
              opts: { jobId: `${tag}-c` },
            },
          ],
        });
      })();
    });
    await expect(late).rejects.toBeInstanceOf(TransactionClosedError);
    expect(await redis.exists(key(QUEUES[0], `${tag}-p`))).toBe(0);
    expect(await redis.exists(key(QUEUES[1], `${tag}-c`))).toBe(0);
  });

  it('a flow added in a NESTED scope, not awaited, after the savepoint rolled back: refused, not in Redis', async () => {
    const tag = uniqueName('late-nested');
    let late: Promise<FlowJobIds> | undefined;
    await host.withTransaction(async () => {
      await host
        .withTransaction(
          async () => {
            late = (async () => {
              await new Promise((r) => setTimeout(r, 30));
              return flows.add({
                name: 'p',
                queueName: QUEUES[0],
                data: {},
                opts: { jobId: `${tag}-p` },
                children: [{ name: 'c', queueName: QUEUES[1], data: {} }],
              });
            })();
            late.catch(() => undefined);
            throw new Error('nested');
          },
          { propagation: Propagation.Nested },
        )
        .catch(() => undefined);
      await new Promise((r) => setTimeout(r, 60));
    });
    await expect(late).rejects.toBeInstanceOf(TransactionClosedError);
    expect(await redis.exists(key(QUEUES[0], `${tag}-p`))).toBe(0);
  });

  it('a flow BullMQ refuses (bad id deep in the tree, priority too high, dedup on a child) rejects in the transaction; the rest of it never reaches Redis', async () => {
    const bad = [
      { jobId: '0:x' },
      { jobId: 'a:b' },
      { priority: 2_097_153 },
      { deduplication: { id: 'x' } },
    ];
    for (const opts of bad) {
      const tag = uniqueName('bad');
      const error = await host
        .withTransaction(() =>
          flows.add({
            name: 'p',
            queueName: QUEUES[0],
            data: {},
            opts: { jobId: `${tag}-p` },
            children: [
              {
                name: 'm',
                queueName: QUEUES[1],
                data: {},
                opts: { jobId: `${tag}-m` },
                children: [
                  { name: 'leaf', queueName: QUEUES[2], data: {}, opts },
                ],
              },
            ],
          }),
        )
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TransactionalError);
      expect(await redis.exists(key(QUEUES[0], `${tag}-p`))).toBe(0);
      expect(await redis.exists(key(QUEUES[1], `${tag}-m`))).toBe(0);
    }
  });

  it('duplicate explicit ids inside one flow: refused in the transaction, or the committed flow is whole', async () => {
    const tag = uniqueName('dup-in-flow');
    const failedBefore = flows.stats.failed;
    const outcome = await host
      .withTransaction(() =>
        flows.add({
          name: 'p',
          queueName: QUEUES[0],
          data: {},
          children: [
            {
              name: 'c1',
              queueName: QUEUES[1],
              data: {},
              opts: { jobId: `${tag}-c` },
            },
            {
              name: 'c2',
              queueName: QUEUES[1],
              data: {},
              opts: { jobId: `${tag}-c` },
            },
          ],
        }),
      )
      .catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 100));
    if (outcome instanceof Error) return;
    const ids = outcome as FlowJobIds;
    // a parent with one child id twice: BullMQ keeps one child; the parent still waits for it
    const problems = await wholeProblems(ids);
    expect(problems.filter((p) => !p.includes('dependencies 1/2'))).toEqual([]);
    void failedBefore;
  });

  it('no unhandled rejection or uncaught exception', async () => {
    await nextMacrotask();
    expect(failures.unhandledRejections).toEqual([]);
    expect(failures.uncaughtExceptions).toEqual([]);
  });
});
