/**
 * adversarial6 (scopes on two DataSources): random trees of scopes, each on the `default` or the
 * `analytics` DataSource (both on the run's database), whose leaves write a row through one
 * connection's TransactionHost and add its job (plain or durable) to the queue bound to that same
 * connection, concurrently or in order, with errors thrown and caught anywhere. README "Limits":
 * "Scopes on two DataSources are two transactions ... Jobs follow the transaction of the queue's
 * connectionName." So, for every leaf: its row committed ⇔ its job is in Redis (and, durable in a
 * transaction, ⇔ its outbox row exists), whatever happened on the other connection.
 */
import { BullModule as Bull3Module } from '@nestjs/bull';
import { BullModule as BullMQModule } from '@nestjs/bullmq';
import { INestApplication, Injectable } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import fc from 'fast-check';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  InjectTransactionHost,
  Propagation,
  TransactionalModule,
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { dbQuery } from './support/db';
import {
  poolSizeExtra,
  testDataSourceOptions,
  testRedisUrl,
  uniqueName,
} from './support/env';
import { bullQueue, findJob } from './support/lib-app';
import { Order } from './support/order.entity';
import { createOutboxTable } from './support/outbox-table';
import { watchProcessFailures } from './support/process-failures';
import { LIB_QUEUE } from './support/queue-kind';

const DQ = uniqueName('a6-2ds-default');
const AQ = uniqueName('a6-2ds-analytics');
const TABLE = 'tx_spec_a6_2ds_outbox';
const RUNS = Number(process.env.A6_RUNS ?? 150);
type Conn = 'default' | 'analytics';

@Injectable()
class Hosts {
  constructor(
    readonly d: TransactionHost,
    @InjectTransactionHost('analytics') readonly a: TransactionHost,
    @InjectTransactionAwareQueue(DQ) readonly dq: TransactionAwareQueue<any>,
    @InjectTransactionAwareQueue(AQ) readonly aq: TransactionAwareQueue<any>,
  ) {}
  host(conn: Conn) {
    return conn === 'default' ? this.d : this.a;
  }
  queue(conn: Conn) {
    return conn === 'default' ? this.dq : this.aq;
  }
}

interface WriteOp {
  kind: 'write';
  conn: Conn;
  durable: boolean;
  sharedId: number | null;
  caught: boolean;
}
interface ScopeOp {
  kind: 'scope';
  conn: Conn;
  propagation: Propagation;
  concurrent: boolean;
  fail: boolean;
  caught: boolean;
  children: Op[];
}
type Op = WriteOp | ScopeOp;

const conns = fc.constantFrom<Conn>('default', 'analytics');
const { op: opArb } = fc.letrec<{ op: Op; scope: ScopeOp }>((tie) => ({
  op: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    {
      weight: 4,
      arbitrary: fc.record<WriteOp>({
        kind: fc.constant('write'),
        conn: conns,
        durable: fc.boolean(),
        sharedId: fc.option(fc.integer({ min: 0, max: 1 }), { freq: 3 }),
        caught: fc.boolean(),
      }),
    },
    { weight: 3, arbitrary: tie('scope') },
  ),
  scope: fc.record<ScopeOp>({
    kind: fc.constant('scope'),
    conn: conns,
    propagation: fc.constantFrom(
      Propagation.Required,
      Propagation.RequiresNew,
      Propagation.Nested,
      Propagation.Nested,
      Propagation.Supports,
      Propagation.NotSupported,
      Propagation.Mandatory,
    ),
    concurrent: fc.boolean(),
    fail: fc.boolean(),
    caught: fc.boolean(),
    children: fc.array(tie('op'), { maxLength: 3 }),
  }),
}));
const rootArb = fc.record<ScopeOp>({
  kind: fc.constant('scope'),
  conn: conns,
  propagation: fc.constantFrom(Propagation.Required, Propagation.Nested),
  concurrent: fc.boolean(),
  fail: fc.boolean(),
  caught: fc.constant(true),
  children: fc.array(opArb, { minLength: 1, maxLength: 4 }),
});

interface Written {
  label: string;
  op: WriteOp;
  inTransaction: boolean;
  id?: string;
  error?: unknown;
}

class CaseRun {
  readonly written: Written[] = [];
  private next = 0;
  constructor(
    private readonly id: string,
    private readonly h: Hosts,
  ) {}

  async run(op: Op): Promise<void> {
    if (op.kind === 'write') return this.write(op);
    return this.h.host(op.conn).withTransaction(
      async () => {
        const runChild = (child: Op) =>
          this.run(child).catch((error: unknown) => {
            if (!child.caught) throw error;
          });
        if (op.concurrent) {
          const results = await Promise.allSettled(op.children.map(runChild));
          const failure = results.find((r) => r.status === 'rejected');
          if (failure) throw (failure as PromiseRejectedResult).reason;
        } else {
          for (const child of op.children) await runChild(child);
        }
        if (op.fail) throw new Error('scope fails');
      },
      { propagation: op.propagation },
    );
  }

  private async write(op: WriteOp) {
    const host = this.h.host(op.conn);
    const label = `${this.id}-${++this.next}`;
    const w: Written = { label, op, inTransaction: host.isActive };
    this.written.push(w);
    await dbQuery(
      host.manager,
      'INSERT INTO tx_spec_orders (id, label) VALUES (gen_random_uuid(), $1)',
      [label],
    );
    try {
      w.id = await this.h.queue(op.conn).add(
        'w',
        { label },
        {
          durable: op.durable,
          ...(op.sharedId === null
            ? {}
            : { jobId: `${this.id}-${op.conn}-shared-${op.sharedId}` }),
        },
      );
    } catch (error) {
      w.error = error;
      throw error;
    }
  }
}

describe(`adversarial6: random trees of scopes on two DataSources (${LIB_QUEUE})`, () => {
  const failures = watchProcessFailures();
  let app: INestApplication;
  let h: Hosts;

  beforeAll(async () => {
    await createOutboxTable(TABLE);
    const redis = new URL(testRedisUrl());
    const queues =
      LIB_QUEUE === 'bull'
        ? [
            Bull3Module.forRoot({ url: testRedisUrl() }),
            Bull3Module.registerQueue({ name: DQ }, { name: AQ }),
          ]
        : [
            BullMQModule.forRoot({
              connection: {
                host: redis.hostname,
                port: Number(redis.port || 6379),
              },
            }),
            BullMQModule.registerQueue({ name: DQ }, { name: AQ }),
          ];
    const moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({
          ...testDataSourceOptions(),
          entities: [Order],
          synchronize: true,
          extra: poolSizeExtra(20),
        }),
        TypeOrmModule.forRoot({
          name: 'analytics',
          ...testDataSourceOptions(),
          entities: [Order],
          extra: poolSizeExtra(20),
        }),
        ...queues,
        TransactionalModule.forRoot({
          connectionNames: ['default', 'analytics'],
          plainQueueInTransaction: 'throw',
          outbox: {
            tableName: TABLE,
            markBatchDelayMs: 1,
            relay: { enabled: false, graceMs: 300 },
          },
        }),
        TransactionalModule.registerQueue(
          { name: DQ },
          { name: AQ, connectionName: 'analytics' },
        ),
      ],
      providers: [Hosts],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    h = app.get(Hosts);
  });

  afterAll(async () => {
    for (const name of [DQ, AQ]) {
      await bullQueue(app, name)
        .obliterate({ force: true })
        .catch(() => undefined);
    }
    await app?.close();
    failures.dispose();
  });

  // Minimal counterexample of the random test below: the queue of `default` outside a `default`
  // transaction enqueues at once (whenNoTransaction 'enqueue', README "Queues"), but an
  // `analytics` transaction is open, and the library's own plain-queue detector
  // (plainQueueInTransaction: 'throw') refuses that enqueue as a plain add() in a transaction.
  it('add() to the default queue inside an analytics transaction only enqueues at once (no transaction of its connection)', async () => {
    const label = uniqueName('a6d');
    const outcome = await h.a.withTransaction(async () => {
      await dbQuery(
        h.d.manager,
        'INSERT INTO tx_spec_orders (id, label) VALUES (gen_random_uuid(), $1)',
        [label],
      );
      return h.dq.add('w', { label }).then(
        (id) => ({ id, error: undefined as string | undefined }),
        (error: unknown) => ({
          id: undefined,
          error: String(error).slice(0, 120),
        }),
      );
    });
    expect(outcome.error).toBeUndefined();
    expect(await findJob(bullQueue(app, DQ), outcome.id!)).not.toBeNull();
  });

  it(`a job exists iff the transaction of its own connection committed its row, over ${RUNS} trees`, async () => {
    const ds = app.get(DataSource);
    const outboxes = app.get(TransactionalOutbox);
    const property = fc.asyncProperty(rootArb, async (root) => {
      const run = new CaseRun(uniqueName('a6d'), h);
      await run.run(root).catch(() => undefined);
      const deadline = Date.now() + 600;
      while ((await outboxes.stats()).pending > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      // The relay of each connection's outbox (one table, shared by both connections here).
      while ((await outboxes.relayOnce()) > 0);
      const labels = run.written.map((w) => w.label);
      const committed = new Set<string>(
        (
          await dbQuery(
            ds,
            'SELECT label FROM tx_spec_orders WHERE label = ANY($1)',
            [labels],
          )
        ).map((r: { label: string }) => r.label),
      );
      const outboxLabels = new Set<string>(
        (
          await dbQuery(
            ds,
            `SELECT data->>'label' AS label FROM ${TABLE} WHERE data->>'label' = ANY($1)`,
            [labels],
          )
        ).map((r: { label: string }) => r.label),
      );
      const problems: string[] = [];
      const byJob = new Map<
        string,
        { conn: Conn; committed: Set<string>; adders: Written[] }
      >();
      for (const w of run.written) {
        const isCommitted = committed.has(w.label);
        const where = `${w.label} ${JSON.stringify(w.op)} (in tx: ${w.inTransaction}, row ${isCommitted ? 'committed' : 'absent'})`;
        if (w.error !== undefined) {
          if (isCommitted)
            problems.push(
              `${where}: add() rejected (${String(w.error)}) but its row committed`,
            );
          continue;
        }
        if (w.id === undefined) continue; // its INSERT failed
        const key = `${w.op.conn}:${w.id}`;
        const entry = byJob.get(key) ?? {
          conn: w.op.conn,
          committed: new Set(),
          adders: [],
        };
        entry.adders.push(w);
        if (isCommitted) entry.committed.add(w.label);
        byJob.set(key, entry);
        if (
          w.op.durable &&
          w.inTransaction &&
          outboxLabels.has(w.label) !== isCommitted
        ) {
          problems.push(
            `${where}: outbox row ${outboxLabels.has(w.label) ? 'exists' : 'missing'}`,
          );
        }
      }
      for (const [key, entry] of byJob) {
        const job = await findJob(
          bullQueue(app, entry.conn === 'default' ? DQ : AQ),
          key.slice(entry.conn.length + 1),
        );
        if ((job !== null) !== entry.committed.size > 0) {
          problems.push(
            `job ${key}: ${job ? 'in Redis' : 'absent'}; adders ${entry.adders.map((w) => `${w.label}${committed.has(w.label) ? '(committed)' : ''}`).join(', ')}`,
          );
        } else if (job && !entry.committed.has((job.data as any).label)) {
          problems.push(
            `job ${key} carries ${(job.data as any).label}, not a committed adder's`,
          );
        }
      }
      if (failures.unhandledRejections.length > 0) {
        problems.push(
          `unhandled rejection: ${String(failures.unhandledRejections.splice(0)[0])}`,
        );
      }
      if (problems.length > 0) throw new Error(problems.join('\n'));
    });
    await fc.assert(property, {
      numRuns: RUNS,
      seed: process.env.A6_SEED ? Number(process.env.A6_SEED) : undefined,
      path: process.env.A6_PATH,
      endOnFailure: !process.env.A6_SHRINK,
      timeout: 20_000,
      interruptAfterTimeLimit: Number(process.env.A6_TIME_LIMIT_MS ?? 20_000),
    });
  }, 60_000);
});
