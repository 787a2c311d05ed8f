/**
 * adversarial11: outbox rows edited by hand into something the relay cannot use, on a relay
 * polling fast. README: "The relay does the same with an outbox row whose job the queue refuses
 * (written by an earlier version, or by hand): that row backs off with its error, and the rows
 * claimed with it are enqueued and marked." A poison row must never hold the others back.
 */
import { INestApplication } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { TransactionalOutbox } from '../src';
import { dbQuery, openDataSource } from './support/db';
import { itOnMariaDb, uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
  waitFor,
} from './support/lib-app';
import { createOutboxTable, insertOutboxRow } from './support/outbox-table';
import { watchProcessFailures } from './support/process-failures';

jest.setTimeout(60_000);

const TABLE = `a11_poison_${process.pid}`;
const failures = watchProcessFailures();

let admin: DataSource;
beforeAll(async () => {
  await createOutboxTable(TABLE);
  admin = await openDataSource();
});
afterAll(async () => {
  failures.dispose();
  await admin?.destroy();
});
afterEach(() => {
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
});

async function relayApp(queue: string, batchSize: number) {
  return createLibApp({
    queues: [{ name: queue }],
    listen: false,
    options: {
      outbox: {
        tableName: TABLE,
        relay: {
          graceMs: 0,
          pollIntervalMs: 50,
          maxBackoffMs: 4000,
          batchSize,
          redisTimeoutMs: 1000,
          leaseMs: 5000,
        },
      },
    },
  });
}

/** A row whose job is fine, made eligible with `available_at` `ageMs` in the past. */
async function goodRow(queue: string, id: string) {
  await insertOutboxRow(admin, TABLE, {
    queue,
    id,
    jobName: 'ok',
    data: { ok: true },
    opts: { jobId: id },
  });
}

describe('a poison outbox row never holds the other rows back', () => {
  let app: INestApplication | undefined;
  let queue = '';
  afterEach(async () => {
    await closeLibApp(app, [queue]);
    app = undefined;
  });

  it('batchSize 1: six rows whose opts are JSON null (refused by the relay) ahead of one good row: the good row is relayed within a second, not after the relay-wide backoff of six "failed" polls', async () => {
    queue = uniqueName('a11-poison-b1');
    // NOTE: older rows first (the claim takes the oldest available_at first).
    for (let i = 0; i < 6; i++) {
      await dbQuery(
        admin,
        `INSERT INTO ${TABLE} (queue, id, job_name, data, opts, available_at)
         VALUES ($1, $2, 'bad', '{}', 'null', clock_timestamp() - interval '60 seconds')`,
        [queue, `poison-${i}`],
      );
    }
    const good = `good-${Date.now()}`;
    await goodRow(queue, good);
    app = await relayApp(queue, 1);
    const started = Date.now();
    await waitFor(
      () => inRedis(bullQueue(app!, queue), good),
      'the good row relayed',
      15_000,
    );
    const took = Date.now() - started;
    // 6 poison polls, each "failed": backoff 100+200+400+800+1600+3200 ms before the good row.
    expect({ took: took < 1500 ? '< 1.5 s' : `${took} ms` }).toEqual({
      took: '< 1.5 s',
    });
    const stats = await app.get(TransactionalOutbox).stats();
    expect(stats.failing).toBeGreaterThanOrEqual(6);
  });

  itOnMariaDb(
    'MariaDB: a row whose data MariaDB\'s JSON_VALID accepts but JSON.parse does not ("\\x41" escape) backs off with its error; the good row claimed with it is relayed',
    async () => {
      queue = uniqueName('a11-poison-json');
      // MariaDB's JSON_VALID accepts the escape \x and a number "1."; JSON.parse refuses both.
      await dbQuery(
        admin,
        `INSERT INTO ${TABLE} (queue, id, job_name, data, opts, available_at)
         VALUES ($1, 'bad-json', 'bad', '{"s":"\\\\x41","n":1.}', '{}', clock_timestamp() - interval '60 seconds')`,
        [queue],
      );
      const [{ valid }] = await admin.query(
        `SELECT CAST(data AS CHAR) AS valid FROM ${TABLE} WHERE id = 'bad-json'`,
      );
      expect(() => JSON.parse(valid)).toThrow(SyntaxError);
      const good = `good-${Date.now()}`;
      await goodRow(queue, good);
      app = await relayApp(queue, 500);
      await waitFor(
        () => inRedis(bullQueue(app!, queue), good),
        'the good row relayed',
        5_000,
      );
      await waitFor(
        async () =>
          Number(
            (
              await dbQuery(
                admin,
                `SELECT relay_attempts::int AS attempts FROM ${TABLE} WHERE queue = $1 AND id = 'bad-json'`,
                [queue],
              )
            )[0].attempts,
          ) >= 1,
        'the bad row recorded as failing',
        5_000,
      );
      const [row] = await dbQuery(
        admin,
        `SELECT relay_attempts AS attempts, last_error AS error FROM ${TABLE} WHERE queue = $1 AND id = 'bad-json'`,
        [queue],
      );
      expect(Number(row.attempts)).toBeGreaterThanOrEqual(1);
      expect(row.error).toMatch(/JSON/);
    },
  );
});
