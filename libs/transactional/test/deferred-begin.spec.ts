/**
 * Postgres: a transaction's BEGIN goes out with its first statement (`coalesceRoundTrips`, on by
 * default), in every way a statement can reach node-postgres, and the transaction is the same
 * transaction it was: one transaction id, its isolation level, rolled back as a whole, and the
 * connection fit for the next transaction (named statements included).
 */
import { INestApplication, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  Propagation,
  TransactionAwareQueue,
  TransactionHost,
  UnexpectedRollbackError,
} from '../src';
import { onMariaDb, testDataSourceOptions, uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
  waitFor,
} from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';
import { poolState } from './support/db';

const QUEUE = uniqueName('deferred-begin');

/** The part of node-postgres' client the spec drives directly. */
interface PgClient {
  query(...args: unknown[]): any;
  connection: {
    on(event: string, listener: () => void): void;
    off(event: string, listener: () => void): void;
  };
  constructor: { Query: new (text: string, values?: unknown[]) => unknown };
}

@Injectable()
class Probe {
  constructor(
    readonly host: TransactionHost,
    readonly dataSource: DataSource,
    @InjectTransactionAwareQueue(QUEUE)
    readonly queue: TransactionAwareQueue<{ label: string }>,
  ) {}

  /** node-postgres' client of the current transaction. */
  client(): PgClient {
    return (
      this.host.manager.queryRunner as unknown as {
        databaseConnection: PgClient;
      }
    ).databaseConnection;
  }

  /** The pool's only client (the spec's pools have one connection). */
  private pooled?: PgClient;

  /**
   * Runs `work` in a transaction and counts the round trips of its connection (ReadyForQuery
   * messages), BEGIN to COMMIT or ROLLBACK.
   */
  async roundTrips(
    work: () => Promise<unknown>,
    options: { isolationLevel?: 'SERIALIZABLE' } = {},
  ): Promise<{ trips: number; error?: unknown }> {
    this.pooled ??= await this.host.withTransaction(async () => this.client());
    let trips = 0;
    const count = () => (trips += 1);
    this.pooled.connection.on('readyForQuery', count);
    let error: unknown;
    await this.host
      .withTransaction(async () => {
        expect(this.client()).toBe(this.pooled);
        await work();
      }, options)
      .catch((e: unknown) => (error = e));
    this.pooled.connection.off('readyForQuery', count);
    return { trips, error };
  }

  async labels(prefix: string): Promise<string[]> {
    const rows: { label: string }[] = await this.dataSource.query(
      `SELECT label FROM tx_spec_orders WHERE label LIKE $1 ORDER BY label`,
      [`${prefix}%`],
    );
    return rows.map((r) => r.label);
  }
}

/** What a caller sees of a node-postgres result (or TypeORM's rows), for comparison. */
function shape(result: unknown): unknown {
  if (Array.isArray(result)) return result.map(shape);
  if (result && typeof result === 'object' && 'command' in result) {
    const { command, rowCount, rows } = result as Record<string, unknown>;
    return { command, rowCount, rows };
  }
  return result;
}

const describeOnPostgres = onMariaDb ? describe.skip : describe;

describeOnPostgres('deferred BEGIN (Postgres)', () => {
  let app: INestApplication;
  let eager: INestApplication;
  let probe: Probe;
  let eagerProbe: Probe;

  beforeAll(async () => {
    // NOTE: one connection, so every transaction reuses the one before it.
    app = await createLibApp({
      providers: [Probe],
      queues: [{ name: QUEUE }],
      listen: false,
      poolSize: 1,
    });
    eager = await createLibApp({
      providers: [Probe],
      queues: [{ name: QUEUE }],
      listen: false,
      poolSize: 1,
      options: { coalesceRoundTrips: false },
    });
    probe = app.get(Probe);
    eagerProbe = eager.get(Probe);
  });

  afterAll(async () => {
    await closeLibApp(eager, []);
    await closeLibApp(app, [QUEUE]);
  });

  const insert = (p: Probe, label: string) =>
    p.host.manager.query(`INSERT INTO tx_spec_orders (label) VALUES ($1)`, [
      label,
    ]);

  it('sends BEGIN with the first statement: one round trip fewer than with coalesceRoundTrips: false', async () => {
    const label = uniqueName('rt');
    const work = (p: Probe, suffix: string) => async () => {
      await insert(p, `${label}-${suffix}-1`);
      await insert(p, `${label}-${suffix}-2`);
    };
    const deferred = await probe.roundTrips(work(probe, 'd'));
    const sentFirst = await eagerProbe.roundTrips(work(eagerProbe, 'e'));
    // Two statements and COMMIT; BEGIN as a round trip of its own only when not deferred.
    expect(deferred).toEqual({ trips: 3, error: undefined });
    expect(sentFirst).toEqual({ trips: 4, error: undefined });
    expect(await probe.labels(label)).toEqual([
      `${label}-d-1`,
      `${label}-d-2`,
      `${label}-e-1`,
      `${label}-e-2`,
    ]);
  });

  it('runs every statement of the transaction in one transaction, whatever the first is', async () => {
    const firsts: Record<string, (p: Probe) => Promise<unknown>> = {
      parameters: (p) => p.host.manager.query(`SELECT $1::int AS one`, [1]),
      simple: (p) => p.host.manager.query(`SELECT 1 AS one`),
      'several simple': (p) =>
        p.client().query(`SELECT 1 AS one; SELECT 2 AS two`),
      'several simple, TypeORM': (p) =>
        p.host.manager.query(`SELECT 1 AS one; SELECT 2 AS two`),
      named: (p) =>
        p.client().query({
          name: 'deferred_begin_one',
          text: 'SELECT $1::int AS one',
          values: [1],
        }),
      'array rows': (p) =>
        p.client().query({
          text: 'SELECT $1::int AS one',
          values: [1],
          rowMode: 'array',
        }),
      callback: (p) =>
        new Promise((resolve, reject) =>
          p
            .client()
            .query(
              'SELECT $1::int AS one',
              [1],
              (e: Error | null, r: unknown) => (e ? reject(e) : resolve(r)),
            ),
        ),
      submittable: (p) =>
        new Promise((resolve, reject) => {
          const client = p.client();
          const query = new client.constructor.Query('SELECT $1::int AS one', [
            1,
          ]);
          client.query(query, (e: Error | null, r: unknown) =>
            e ? reject(e) : resolve(r),
          );
        }),
    };
    for (const [kind, first] of Object.entries(firsts)) {
      const results: unknown[] = [];
      for (const p of [probe, eagerProbe]) {
        const label = uniqueName(`one-${kind}`);
        let xids: string[] = [];
        const { error } = await p.roundTrips(async () => {
          results.push(shape(await first(p)));
          await insert(p, label);
          const rows = await p.host.manager.query(
            `SELECT xmin::text AS row_xid, (txid_current() % 4294967296)::text AS xid
               FROM tx_spec_orders WHERE label = $1`,
            [label],
          );
          xids = [rows[0].row_xid, rows[0].xid];
          throw new Error('roll back');
        });
        expect({ kind, error: (error as Error).message }).toEqual({
          kind,
          error: 'roll back',
        });
        // The row was written by the transaction that then rolled back, BEGIN included.
        expect({ kind, same: xids[0] === xids[1] }).toEqual({
          kind,
          same: true,
        });
        expect({ kind, rows: await p.labels(label) }).toEqual({
          kind,
          rows: [],
        });
      }
      // The caller gets what it gets without coalesceRoundTrips, not BEGIN's result.
      expect({ kind, result: results[0] }).toEqual({
        kind,
        result: results[1],
      });
    }
  });

  it('keeps the isolation level: SERIALIZABLE is in force at the first statement', async () => {
    let level: string | undefined;
    const { trips, error } = await probe.roundTrips(
      async () => {
        const [row] = await probe.host.manager.query(
          `SHOW transaction_isolation`,
        );
        level = row.transaction_isolation;
      },
      { isolationLevel: 'SERIALIZABLE' },
    );
    expect({ level, trips, error }).toEqual({
      level: 'serializable',
      trips: 2,
      error: undefined,
    });
  });

  it('sends nothing for a transaction without statements, and still enqueues its jobs', async () => {
    const label = uniqueName('empty');
    let jobId: string | undefined;
    const committed = await probe.roundTrips(async () => {
      jobId = await probe.queue.add({ label });
    });
    const rolledBack = await probe.roundTrips(async () => {
      await probe.queue.add({ label: `${label}-rb` }, { jobId: `${label}-rb` });
      throw new Error('roll back');
    });
    expect(committed).toEqual({ trips: 0, error: undefined });
    expect(rolledBack.trips).toBe(0);
    const queue = bullQueue(app, QUEUE);
    expect(await inRedis(queue, jobId!)).toBe(true);
    expect(await inRedis(queue, `${label}-rb`)).toBe(false);
    expect(poolState(probe.dataSource).inUse).toBe(0);
  });

  it('a failing first statement fails with its own error and leaves the connection fit for the next transaction', async () => {
    const { trips, error } = await probe.roundTrips(() =>
      probe.host.manager.query(`SELECT $1::int / 0`, [1]),
    );
    expect(
      (error as { driverError?: { code?: string } }).driverError?.code,
    ).toBe('22012');
    // The statement (with BEGIN) and the ROLLBACK.
    expect(trips).toBe(2);
    const label = uniqueName('after-failure');
    await probe.host.withTransaction(() => insert(probe, label));
    expect(await probe.labels(label)).toEqual([label]);
  });

  it('a named statement skipped because a deferred statement failed is parsed again next time', async () => {
    const named = {
      name: uniqueName('deferred_named'),
      text: 'SELECT $1::int AS one',
      values: [1],
    };
    // A SET TRANSACTION the application sends first is deferred with BEGIN, and fails with it.
    const { error } = await probe.roundTrips(async () => {
      await probe.host.manager.query(
        `SET TRANSACTION ISOLATION LEVEL NONSENSE`,
      );
      await probe.client().query(named);
    });
    expect((error as { code?: string }).code).toBe('42601');
    let rows: unknown;
    await probe.host.withTransaction(async () => {
      rows = (await probe.client().query(named)).rows;
    });
    expect(rows).toEqual([{ one: 1 }]);
  });

  it('concurrent first statements all run in the transaction', async () => {
    const label = uniqueName('concurrent');
    const { error } = await probe.roundTrips(async () => {
      await Promise.all(
        [1, 2, 3, 4, 5].map((i) => insert(probe, `${label}-${i}`)),
      );
      throw new Error('roll back');
    });
    expect((error as Error).message).toBe('roll back');
    expect(await probe.labels(label)).toEqual([]);
    await probe.host.withTransaction(() =>
      Promise.all([1, 2, 3].map((i) => insert(probe, `${label}-${i}`))),
    );
    expect(await probe.labels(label)).toEqual(
      [1, 2, 3].map((i) => `${label}-${i}`),
    );
  });

  it('gives the pooled client back as it was', async () => {
    let client: PgClient | undefined;
    await probe.host.withTransaction(async () => {
      client = probe.client();
      expect(Object.prototype.hasOwnProperty.call(client, 'query')).toBe(true);
    });
    expect(Object.prototype.hasOwnProperty.call(client, 'query')).toBe(false);
  });
});

const DURABLE = uniqueName('deferred-durable');
const OUTBOX = 'tx_spec_deferred_outbox';

/** Order rows and durable jobs, for the outbox rows that go with the COMMIT. */
@Injectable()
class DurableProbe extends Probe {
  constructor(
    host: TransactionHost,
    dataSource: DataSource,
    @InjectTransactionAwareQueue(QUEUE)
    queue: TransactionAwareQueue<{ label: string }>,
    @InjectTransactionAwareQueue(DURABLE)
    readonly durable: TransactionAwareQueue<{ label: string }>,
  ) {
    super(host, dataSource, queue);
  }

  /** The outbox row of `id`, with its transaction (`xmin`) and whether it is visible. */
  async outboxRow(id: string): Promise<{ xmin: string } | undefined> {
    const [row] = await this.dataSource.query(
      `SELECT xmin::text AS xmin FROM ${OUTBOX} WHERE id = $1`,
      [id],
    );
    return row;
  }

  async orderXmin(label: string): Promise<string | undefined> {
    const [row] = await this.dataSource.query(
      `SELECT xmin::text AS xmin FROM tx_spec_orders WHERE label = $1`,
      [label],
    );
    return row?.xmin;
  }
}

describeOnPostgres('outbox rows with the COMMIT (Postgres)', () => {
  let app: INestApplication;
  let eager: INestApplication;
  let probe: DurableProbe;
  let eagerProbe: DurableProbe;

  const appWith = (coalesceRoundTrips: boolean) =>
    createLibApp({
      providers: [DurableProbe],
      queues: [{ name: QUEUE }, { name: DURABLE, durable: true }],
      listen: false,
      poolSize: 1,
      options: {
        coalesceRoundTrips,
        // NOTE: rows are marked dispatched a minute later: their xmin stays the INSERT's.
        outbox: {
          tableName: OUTBOX,
          markBatchDelayMs: 60_000,
          relay: { enabled: false, graceMs: 600_000 },
        },
      },
    });

  beforeAll(async () => {
    await createOutboxTable(OUTBOX);
    await new DataSource(testDataSourceOptions())
      .initialize()
      .then(async (ds) => {
        await ds.query(
          `ALTER TABLE ${OUTBOX} ADD CONSTRAINT no_poison CHECK (job_name <> 'poison')`,
        );
        await ds.destroy();
      });
    app = await appWith(true);
    eager = await appWith(false);
    probe = app.get(DurableProbe);
    eagerProbe = eager.get(DurableProbe);
  });

  afterAll(async () => {
    await closeLibApp(eager, []);
    await closeLibApp(app, [QUEUE, DURABLE]);
  });

  const insert = (p: Probe, label: string) =>
    p.host.manager.query(`INSERT INTO tx_spec_orders (label) VALUES ($1)`, [
      label,
    ]);

  it('writes the root scope’s rows in front of COMMIT, in its transaction, one INSERT for all', async () => {
    const label = uniqueName('with-commit');
    const ids: string[] = [];
    const { trips, error } = await probe.roundTrips(async () => {
      await insert(probe, label);
      ids.push(await probe.durable.add({ label }));
      ids.push(
        ...(await probe.durable.addBulk([
          { data: { label } },
          { data: { label } },
        ])),
      );
      // Not written yet: held back for the COMMIT.
      const [{ n }] = await probe.host.manager.query(
        `SELECT count(*)::int AS n FROM ${OUTBOX} WHERE id = ANY($1)`,
        [ids],
      );
      expect(n).toBe(0);
    });
    // BEGIN + the order's INSERT + the count, then the outbox INSERT + COMMIT.
    expect({ trips, error }).toEqual({ trips: 3, error: undefined });
    const orderXmin = await probe.orderXmin(label);
    for (const id of ids)
      expect((await probe.outboxRow(id))?.xmin).toBe(orderXmin);
    // The fast path enqueues them.
    const bull = bullQueue(app, DURABLE);
    await waitFor(
      async () =>
        (await Promise.all(ids.map((id) => inRedis(bull, id)))).every(Boolean),
      'the jobs',
    );
  });

  it('takes two round trips fewer than with coalesceRoundTrips: false', async () => {
    const work = (p: DurableProbe) => async () => {
      const label = uniqueName('count');
      await insert(p, label);
      await p.durable.add({ label });
    };
    const deferred = await probe.roundTrips(work(probe));
    const eagerTrips = await eagerProbe.roundTrips(work(eagerProbe));
    // BEGIN with the order's INSERT, the outbox INSERT with COMMIT; against all four alone.
    expect(deferred).toEqual({ trips: 2, error: undefined });
    expect(eagerTrips).toEqual({ trips: 4, error: undefined });
  });

  it('writes nothing, and sends no outbox INSERT, when the transaction rolls back', async () => {
    const label = uniqueName('rolled-back');
    let id = '';
    const { trips, error } = await probe.roundTrips(async () => {
      await insert(probe, label);
      id = await probe.durable.add({ label });
      throw new Error('roll back');
    });
    expect({ trips, message: (error as Error).message }).toEqual({
      trips: 2,
      message: 'roll back',
    });
    expect(await probe.outboxRow(id)).toBeUndefined();
    expect(await inRedis(bullQueue(app, DURABLE), id)).toBe(false);
  });

  it('writes the rows of a NESTED scope at once, in its savepoint', async () => {
    const label = uniqueName('nested');
    let inner = '';
    let dropped = '';
    let seenInside = -1;
    await probe.host.withTransaction(async () => {
      await probe.host.withTransaction(
        async () => {
          inner = await probe.durable.add({ label });
        },
        { propagation: Propagation.Nested },
      );
      await probe.host
        .withTransaction(
          async () => {
            dropped = await probe.durable.add({ label });
            throw new Error('inner rolls back');
          },
          { propagation: Propagation.Nested },
        )
        .catch(() => undefined);
      const [{ n }] = await probe.host.manager.query(
        `SELECT count(*)::int AS n FROM ${OUTBOX} WHERE id = ANY($1)`,
        [[inner, dropped]],
      );
      seenInside = n;
    });
    expect(seenInside).toBe(1);
    expect(await probe.outboxRow(inner)).toBeDefined();
    expect(await probe.outboxRow(dropped)).toBeUndefined();
  });

  it('holds at most 1,000 rows: an add past that is written at once, the held ones still go with COMMIT', async () => {
    const label = uniqueName('many');
    let held: string[] = [];
    let large: string[] = [];
    let visible = -1;
    await probe.host.withTransaction(async () => {
      held = await probe.durable.addBulk(
        Array.from({ length: 1000 }, () => ({ data: { label } })),
      );
      large = await probe.durable.addBulk([{ data: { label } }]);
      const [{ n }] = await probe.host.manager.query(
        `SELECT count(*)::int AS n FROM ${OUTBOX} WHERE id = ANY($1)`,
        [[...held, ...large]],
      );
      visible = n;
    });
    // The 1,001st row did not fit: written by its add(); the first 1,000 only with COMMIT.
    expect(visible).toBe(1);
    const [{ n }] = await probe.dataSource.query(
      `SELECT count(*)::int AS n FROM ${OUTBOX} WHERE id = ANY($1)`,
      [[...held, ...large]],
    );
    expect(n).toBe(1001);
  });

  it('turns the outbox INSERT refused by an aborted transaction into UnexpectedRollbackError', async () => {
    const label = uniqueName('aborted');
    let id = '';
    const error = await probe.host
      .withTransaction(async () => {
        await insert(probe, label);
        id = await probe.durable.add({ label });
        // NOTE: not awaited: when the scope commits, the client has not yet heard that this
        // statement aborted the transaction, so the outbox INSERT is what finds it aborted.
        void probe.host.manager.query(`SELECT 1 / 0`).catch(() => undefined);
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnexpectedRollbackError);
    expect(await probe.labels(label)).toEqual([]);
    expect(await probe.outboxRow(id)).toBeUndefined();
    expect(await inRedis(bullQueue(app, DURABLE), id)).toBe(false);
    expect(poolState(probe.dataSource).inUse).toBe(0);
  });

  it('fails the commit with the outbox INSERT’s error: nothing committed, nothing enqueued, the connection fit', async () => {
    const label = uniqueName('poison');
    let id = '';
    const { error } = await probe.roundTrips(async () => {
      await insert(probe, label);
      // The table refuses the row only when it is written: add() resolves.
      id = await probe.durable.add('poison', { label });
    });
    expect(
      (error as { driverError?: { code?: string } }).driverError?.code,
    ).toBe('23514');
    expect(await probe.labels(label)).toEqual([]);
    expect(await probe.outboxRow(id)).toBeUndefined();
    expect(await inRedis(bullQueue(app, DURABLE), id)).toBe(false);
    const next = uniqueName('after-poison');
    await probe.host.withTransaction(async () => {
      await insert(probe, next);
      await probe.durable.add({ label: next });
    });
    expect(await probe.labels(next)).toEqual([next]);
    expect(poolState(probe.dataSource).inUse).toBe(0);
  });
});
