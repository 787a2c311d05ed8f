/**
 * A NESTED scope opened under a NESTED scope whose rollback has begun (its ROLLBACK TO SAVEPOINT
 * sent, not answered yet) must be refused. Opened, its SAVEPOINT went out after the ROLLBACK TO,
 * so on the server it outlived the scope it belonged to: the enclosing scope's next statements
 * ran inside it, and when it rolled back it took them along, while their jobs committed with the
 * transaction (found by adversarial6-scopes, seed -1660548082, path 173, on BullMQ).
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

describe('a NESTED scope opened while its parent scope rolls back', () => {
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

  it('is refused, and the enclosing scope’s row commits with its job', async () => {
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
            // Keeps the connection busy, so that the ROLLBACK TO below waits 300 ms for it.
            void dbQuery(host.manager, 'SELECT pg_sleep(0.3)').catch(
              () => undefined,
            );
            // Opened while this scope rolls back, from code it left running.
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
  });
});
