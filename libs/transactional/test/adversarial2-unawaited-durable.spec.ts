import { INestApplication } from '@nestjs/common';
import { DataSource } from 'typeorm';
import {
  getTransactionAwareQueueToken,
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionClosedError,
  TransactionHost,
} from '../src';
import { uniqueName } from './support/env';
import { dbQuery } from './support/db';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
} from './support/lib-app';
import {
  createOutboxTable,
  makeOutboxRowsEligible,
} from './support/outbox-table';

const DURABLE = uniqueName('adv2-unawaited');
const TABLE = 'tx_spec_outbox_adv2_unawaited';

describe('adversarial2: a durable add() called inside the scope but not awaited', () => {
  let app: INestApplication;
  const host = () => app.get(TransactionHost);
  const aware = () =>
    app.get<TransactionAwareQueue<any>>(getTransactionAwareQueueToken(DURABLE));

  beforeAll(async () => {
    await createOutboxTable(TABLE);
    app = await createLibApp({
      queues: [{ name: DURABLE, durable: true }],
      options: {
        // NOTE: the default on MySQL/MariaDB (no COMMIT that carries a statement); on Postgres
        // a documented option.
        coalesceRoundTrips: false,
        outbox: { tableName: TABLE, relay: { enabled: false } },
      },
      listen: false,
    });
  });

  afterAll(() => closeLibApp(app, [DURABLE]));

  it('should either take the job (add() resolves, job enqueued) or refuse it (add() rejects, nothing enqueued), never reject and enqueue', async () => {
    let outcome: { id?: string; error?: unknown } | undefined;
    let settled!: Promise<unknown>;
    await host().withTransaction(async () => {
      // add() is called while the scope is open; the method returns without awaiting it
      settled = aware()
        .add({ n: 1 }, { jobId: uniqueName('unawaited') })
        .then(
          (id) => (outcome = { id }),
          (error) => (outcome = { error }),
        );
    });
    await settled;
    const rows = await dbQuery(
      app.get(DataSource),
      `SELECT id, opts->>'jobId' AS job_id FROM ${TABLE} WHERE queue = $1`,
      [DURABLE],
    );
    await makeOutboxRowsEligible(app.get(DataSource), TABLE);
    await app.get(TransactionalOutbox).relayOnce();
    const jobId = rows[0]?.job_id;
    const enqueued = jobId
      ? await inRedis(bullQueue(app, DURABLE), jobId)
      : false;

    const rejectedWith =
      outcome?.error instanceof TransactionClosedError
        ? 'TransactionClosedError'
        : String(outcome?.error ?? '');
    expect({
      rejectedWith,
      committedOutboxRows: rows.length,
      enqueuedByRelay: enqueued,
    }).toEqual(
      outcome?.error
        ? { rejectedWith, committedOutboxRows: 0, enqueuedByRelay: false }
        : { rejectedWith: '', committedOutboxRows: 1, enqueuedByRelay: true },
    );
  });
});
