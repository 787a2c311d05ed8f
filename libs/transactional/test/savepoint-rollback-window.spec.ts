/**
 * A NESTED scope opened under a NESTED scope whose end has begun (its ROLLBACK TO SAVEPOINT or
 * its RELEASE SAVEPOINT sent, not answered yet) must be refused. Opened, its SAVEPOINT went out
 * after the ROLLBACK TO or RELEASE, so on the server it outlived the scope it belonged to: the
 * enclosing scope's next statements ran inside it, and when it rolled back it took them along,
 * while their jobs committed with the transaction. Found by adversarial6-scopes: the rollback on
 * BullMQ (seed -1660548082, path 173), the release on MariaDB and Postgres (seed -2069806213,
 * path 68: a detached NESTED scope whose parent returned).
 */
import { INestApplication, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  Propagation,
  TransactionAwareQueue,
  TransactionClosedError,
  TransactionHost,
} from '../src';
import { dbQuery } from './support/db';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
  waitFor,
} from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';

const DURABLE = uniqueName('sp-window');
const OUTBOX = 'tx_spec_sp_window_outbox';

@Injectable()
class Probe {
  constructor(
    readonly host: TransactionHost,
    readonly dataSource: DataSource,
    @InjectTransactionAwareQueue(DURABLE)
    readonly durable: TransactionAwareQueue<{ label: string }>,
  ) {}

  insert(label: string) {
    return dbQuery(
      this.host.manager,
      'INSERT INTO tx_spec_orders (id, label) VALUES (gen_random_uuid(), $1)',
      [label],
    );
  }

  async committed(label: string): Promise<boolean> {
    const rows: unknown[] = await dbQuery(
      this.dataSource,
      'SELECT 1 FROM tx_spec_orders WHERE label = $1',
      [label],
    );
    return rows.length === 1;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('a NESTED scope opened while its parent scope ends', () => {
  let app: INestApplication;
  let probe: Probe;

  beforeAll(async () => {
    await createOutboxTable(OUTBOX);
    app = await createLibApp({
      providers: [Probe],
      queues: [{ name: DURABLE, durable: true }],
      listen: false,
      poolSize: 2,
      options: {
        outbox: { tableName: OUTBOX, relay: { enabled: false } },
      },
    });
    probe = app.get(Probe);
  });

  afterAll(async () => {
    await closeLibApp(app, [DURABLE]);
  });

  it.each(['rolls back', 'releases'] as const)(
    'is refused while its parent %s, and the enclosing scope’s row commits with its job',
    async (parentEnd) => {
      const { host } = probe;
      const label = uniqueName('outer');
      let late: Promise<unknown> | undefined;
      let outerWritten!: () => void;
      const written = new Promise<void>((resolve) => (outerWritten = resolve));
      let id = '';
      let lateError: unknown;
      await host.withTransaction(async () => {
        await host
          .withTransaction(
            async () => {
              // Keeps the connection busy, so that the ROLLBACK TO (or RELEASE) below waits
              // 300 ms for it.
              void dbQuery(host.manager, 'SELECT pg_sleep(0.3)').catch(
                () => undefined,
              );
              // Opened while this scope ends, from code it left running.
              late = sleep(100)
                .then(() =>
                  host.withTransaction(
                    async () => {
                      await written;
                      throw new Error('the late scope fails');
                    },
                    { propagation: Propagation.Nested },
                  ),
                )
                .then(
                  () => undefined,
                  (error: unknown) => error,
                );
              if (parentEnd === 'rolls back')
                throw new Error('the nested scope fails');
            },
            { propagation: Propagation.Nested },
          )
          .catch(() => undefined);
        await probe.insert(label);
        id = await probe.durable.add({ label });
        outerWritten();
        lateError = await late;
      });
      // The row and its job both committed.
      expect(await probe.committed(label)).toBe(true);
      await waitFor(
        () => inRedis(bullQueue(app, DURABLE), id),
        'the job in Redis',
      );
      expect(lateError).toBeInstanceOf(TransactionClosedError);
    },
  );

  it('lets the statements of a scope left running follow its parent’s RELEASE: they commit with the parent’s work, and the transaction is not aborted', async () => {
    const { host } = probe;
    const label = uniqueName('outer-rel2');
    const childLabel = uniqueName('child-late');
    let child: Promise<unknown> | undefined;
    let insertError: unknown;
    await host.withTransaction(async () => {
      await host.withTransaction(
        async () => {
          // A child scope left running: it opens its savepoint now, writes later.
          child = host
            .withTransaction(
              async () => {
                void dbQuery(host.manager, 'SELECT pg_sleep(0.3)').catch(
                  () => undefined,
                );
                await sleep(100);
                // The parent’s RELEASE went out behind pg_sleep; this INSERT follows it
                // and lands in the enclosing scope.
                await probe.insert(childLabel).catch((error: unknown) => {
                  insertError = error;
                  throw error;
                });
              },
              { propagation: Propagation.Nested },
            )
            .catch(() => undefined);
          await sleep(20);
        },
        { propagation: Propagation.Nested },
      );
      await probe.insert(label);
      await probe.durable.add({ label });
      await child;
    });
    expect(await probe.committed(label)).toBe(true);
    // NOTE: the INSERT runs after the RELEASE, in the enclosing scope, where the released
    // savepoint's work went; the child's own RELEASE is not sent (it would fail and, on
    // Postgres, abort the transaction).
    expect(insertError).toBeUndefined();
    expect(await probe.committed(childLabel)).toBe(true);
  });

  it.each([
    ['released', 'fails', true],
    ['rolled back', 'returns', false],
  ] as const)(
    'a scope left running whose parent’s savepoint was %s follows it, and then %s without touching the transaction',
    async (parentOutcome, childEnd, childKept) => {
      const { host } = probe;
      const label = uniqueName('outer-follow');
      const childLabel = uniqueName('child-follow');
      let childWrote!: () => void;
      const wrote = new Promise<void>((resolve) => (childWrote = resolve));
      let parentEnded!: () => void;
      const ended = new Promise<void>((resolve) => (parentEnded = resolve));
      let child: Promise<unknown> | undefined;
      let childId = '';
      let id = '';
      await host.withTransaction(async () => {
        await host
          .withTransaction(
            async () => {
              child = host
                .withTransaction(
                  async () => {
                    await probe.insert(childLabel);
                    childId = await probe.durable.add({ label: childLabel });
                    childWrote();
                    await ended;
                    if (childEnd === 'fails')
                      throw new Error('the child fails after its parent ended');
                  },
                  { propagation: Propagation.Nested },
                )
                .then(
                  () => 'returned',
                  (error: unknown) => error,
                );
              await wrote;
              if (parentOutcome === 'rolled back')
                throw new Error('the parent fails');
            },
            { propagation: Propagation.Nested },
          )
          .catch(() => undefined);
        parentEnded();
        // Its own RELEASE or ROLLBACK TO would fail (the savepoint is gone): on Postgres that
        // aborted the whole transaction.
        expect(await child).toEqual(
          childEnd === 'fails'
            ? new Error('the child fails after its parent ended')
            : 'returned',
        );
        await probe.insert(label);
        id = await probe.durable.add({ label });
      });
      expect(await probe.committed(label)).toBe(true);
      await waitFor(
        () => inRedis(bullQueue(app, DURABLE), id),
        'the job in Redis',
      );
      expect(await probe.committed(childLabel)).toBe(childKept);
      if (childKept) {
        await waitFor(
          () => inRedis(bullQueue(app, DURABLE), childId),
          'the child’s job in Redis',
        );
      } else {
        await sleep(200);
        expect(await inRedis(bullQueue(app, DURABLE), childId)).toBe(false);
      }
    },
  );

  it('refuses a statement that waited for a child savepoint once its own scope’s ROLLBACK TO is on its way', async () => {
    // adversarial6-scopes (trees aimed at the ends of NESTED scopes), seed -2008905876: the
    // statement was let through when the child's savepoint ended, after the ROLLBACK TO.
    const { host } = probe;
    const label = uniqueName('outer-waiter');
    const waiterLabel = uniqueName('waiter');
    let waiter: Promise<unknown> | undefined;
    await host.withTransaction(async () => {
      await host
        .withTransaction(
          async () => {
            const child = host.withTransaction(
              async () => {
                // Holds the connection: the child's RELEASE waits 300 ms behind it.
                void dbQuery(host.manager, 'SELECT pg_sleep(0.3)').catch(
                  () => undefined,
                );
              },
              { propagation: Propagation.Nested },
            );
            void child.catch(() => undefined);
            await sleep(20);
            // The child returned; its savepoint is still open until the RELEASE is answered,
            // so this statement of the failing scope waits for it.
            waiter = probe.insert(waiterLabel).then(
              () => 'inserted',
              (error: unknown) => error,
            );
            await sleep(50);
            throw new Error('the nested scope fails');
          },
          { propagation: Propagation.Nested },
        )
        .catch(() => undefined);
      expect(await waiter).toBeInstanceOf(TransactionClosedError);
      await probe.insert(label);
      await probe.durable.add({ label });
    });
    expect(await probe.committed(label)).toBe(true);
    expect(await probe.committed(waiterLabel)).toBe(false);
  });

  it('lets a durable add() a scope called while open, still waiting behind a savepoint it left running, follow its RELEASE', async () => {
    // adversarial6-scopes (aimed trees, BullMQ), seed 1199660574: the add's outbox INSERT was
    // refused once the scope returned, although add() was called while it was open.
    const { host } = probe;
    const label = uniqueName('waiting-add');
    let adding: Promise<unknown> | undefined;
    let id: unknown;
    await host.withTransaction(async () => {
      await probe.insert(label);
      await host.withTransaction(
        async () => {
          // A child left running holds its savepoint open for 100 ms.
          void host
            .withTransaction(() => sleep(100), {
              propagation: Propagation.Nested,
            })
            .catch(() => undefined);
          await sleep(10);
          // Its outbox INSERT waits for the child's savepoint; the scope returns meanwhile.
          adding = probe.durable.add({ label }).then(
            (jobId) => (id = jobId),
            (error: unknown) => error,
          );
        },
        { propagation: Propagation.Nested },
      );
      await adding;
    });
    expect(typeof id).toBe('string');
    expect(await probe.committed(label)).toBe(true);
    // Its outbox row committed: the relay enqueues it (the fast path is skipped for an add that
    // outlived its scope, README "Work registered after its scope has ended").
    const rows: unknown[] = await dbQuery(
      probe.dataSource,
      `SELECT 1 FROM ${OUTBOX} WHERE data->>'label' = $1`,
      [label],
    );
    expect(rows).toHaveLength(1);
  });
});
