/**
 * MySQL/MariaDB: `LOCK TABLES` in a scope commits the transaction implicitly (the scope ends with
 * `TransactionAbortedError`), and its table locks outlive the ROLLBACK: only `UNLOCK TABLES` or
 * the next transaction on that connection ends them. The library must not put such a connection
 * back in the pool, or every other session waits on the table until the pool happens to reuse
 * it. Nothing here reuses connections on its own (no relay).
 */
import { INestApplication } from '@nestjs/common';
import { randomUUID } from 'crypto';
import { DataSource } from 'typeorm';
import { TransactionAbortedError, TransactionHost } from '../src';
import { dbQuery } from './support/db';
import { itOnMariaDb, testDataSourceOptions, uniqueName } from './support/env';
import { createLibApp } from './support/lib-app';
import { Order } from './support/order.entity';

describe('a scope whose LOCK TABLES ended it', () => {
  let app: INestApplication;
  let host: TransactionHost;
  let admin: DataSource;

  beforeAll(async () => {
    app = await createLibApp({ queues: [], listen: false, poolSize: 2 });
    host = app.get(TransactionHost);
    admin = new DataSource(testDataSourceOptions());
    await admin.initialize();
  });

  afterAll(async () => {
    await admin?.destroy();
    await app?.close();
  });

  /** An INSERT from another session, waiting at most 2 s for locks: its error code, if any. */
  async function otherSessionInsert(label: string) {
    const runner = admin.createQueryRunner();
    try {
      await runner.query('SET SESSION lock_wait_timeout = 2');
      return await dbQuery(
        runner,
        'INSERT INTO tx_spec_orders (id, label, "createdAt") VALUES ($1, $2, now())',
        [randomUUID(), label],
      ).then(
        () => 'inserted',
        (e: { driverError?: { code?: string } }) => e.driverError?.code,
      );
    } finally {
      await runner.release();
    }
  }

  itOnMariaDb(
    'leaves no table lock behind: another session writes the table at once, and the pool still serves transactions',
    async () => {
      const label = uniqueName('lock-tables');
      const error = await host
        .withTransaction(async () => {
          await host.getRepository(Order).insert({ label: `${label}-before` });
          await host.manager.query('LOCK TABLES tx_spec_orders WRITE');
          await host.getRepository(Order).insert({ label: `${label}-after` });
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TransactionAbortedError);
      expect(await otherSessionInsert(`${label}-other`)).toBe('inserted');
      // both pooled connections serve transactions afterwards
      const labels = await Promise.all(
        [1, 2, 3].map((i) =>
          host.withTransaction(async () => {
            await host.getRepository(Order).insert({ label: `${label}-${i}` });
            return `${label}-${i}`;
          }),
        ),
      );
      expect(labels).toHaveLength(3);
    },
  );
});
