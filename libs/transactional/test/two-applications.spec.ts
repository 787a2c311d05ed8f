import { INestApplication, Injectable } from '@nestjs/common';
import { Transactional, TransactionHost } from '../src';
import { onMariaDb, testDatabaseUrl } from './support/env';
import { ensureDatabase } from './support/db';
import { createLibApp } from './support/lib-app';
import { Order } from './support/order.entity';
import { dbQuery } from './support/db';

/** The second database of this spec, next to the shared test database. */
const SECOND_DB = `transactional_test_b${process.env.TEST_DB_SUFFIX ?? ''}`;

@Injectable()
class Writer {
  constructor(private readonly tx: TransactionHost) {}

  /** Writes a row and answers which database it went to. */
  @Transactional()
  async write(label: string): Promise<string> {
    await this.tx.getRepository(Order).save({ label });
    const [{ db }] = await dbQuery(
      this.tx.manager,
      onMariaDb ? 'SELECT DATABASE() AS db' : 'SELECT current_database() AS db',
    );
    return db;
  }
}

describe('when two Nest applications run in one process', () => {
  let a: INestApplication;
  let b: INestApplication | undefined;

  beforeAll(async () => {
    await ensureDatabase(SECOND_DB);
    a = await createLibApp({
      providers: [Writer],
      queues: [],
      listen: false,
    });
    b = await createLibApp({
      providers: [Writer],
      queues: [],
      listen: false,
      databaseUrl: testDatabaseUrl(SECOND_DB),
    });
  });

  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  it('should run each application’s @Transactional methods in its own database', async () => {
    const expected = new URL(testDatabaseUrl()).pathname.slice(1);
    expect(await a.get(Writer).write('app a')).toBe(expected);
    expect(await b!.get(Writer).write('app b')).toBe(SECOND_DB);
    expect(await a.get(Writer).write('app a again')).toBe(expected);
  });

  it('should keep serving the first application after the second has closed', async () => {
    const writerB = b!.get(Writer);
    await b!.close();
    b = undefined;
    const expected = new URL(testDatabaseUrl()).pathname.slice(1);
    expect(await a.get(Writer).write('after b closed')).toBe(expected);
    await expect(writerB.write('b is closed')).rejects.toThrow(
      /has been closed/,
    );
  });
});
