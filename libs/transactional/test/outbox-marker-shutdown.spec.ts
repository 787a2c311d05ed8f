import { INestApplication } from '@nestjs/common';
import {
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionHost,
  getTransactionAwareQueueToken,
} from '../src';
import { CapturingLogger } from './support/capturing-logger';
import { dbQuery } from './support/db';
import { uniqueName } from './support/env';
import { closeLibApp, createLibApp } from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';

/**
 * Since an enqueue that lands after the fast path gave up marks its rows (fast-path.spec), a
 * late landing can come during the application's shutdown, after the outbox stopped (its
 * marking drained) and while the DataSource closes: a mark then must not be sent (it would run
 * on a DataSource being destroyed, and log after the app closed). The rows stay pending; the
 * next relay re-adds a job id Redis holds.
 */
const QUEUE = uniqueName('marker-shutdown');
const TABLE = `tx_spec_outbox_marker_shutdown_${process.pid}`;

describe('the dispatch marker after the outbox stopped (shutdown)', () => {
  let app: INestApplication;
  const logger = new CapturingLogger();

  beforeAll(async () => {
    await createOutboxTable(TABLE);
    app = await createLibApp({
      queues: [{ name: QUEUE, durable: true }],
      options: {
        outbox: {
          tableName: TABLE,
          markBatchDelayMs: 1,
          relay: { enabled: false },
        },
      },
      logger,
      listen: false,
    });
  });

  afterAll(() => closeLibApp(app, [QUEUE]));

  const dispatchedAt = async (id: string) =>
    (
      await dbQuery(
        app.get(TransactionHost).manager,
        `SELECT dispatched_at FROM ${TABLE} WHERE queue = $1 AND id = $2`,
        [QUEUE, id],
      )
    )[0]?.dispatched_at ?? null;

  it('should send marks until the outbox stops, and none after', async () => {
    const outbox = app.get(TransactionalOutbox);
    const queue: TransactionAwareQueue<unknown> = app.get(
      getTransactionAwareQueueToken(QUEUE),
    );
    const host = app.get(TransactionHost);
    // Two committed durable jobs; their rows are marked by the fast path. Un-mark them by hand
    // to stand for enqueues whose marks are still to come.
    const ids = await host.withTransaction(async () => [
      await queue.add({ n: 1 }),
      await queue.add({ n: 2 }),
    ]);
    await outbox.stop(); // marks what the fast path enqueued
    await dbQuery(
      host.manager,
      `UPDATE ${TABLE} SET dispatched_at = NULL WHERE queue = $1`,
      [QUEUE],
    );
    const marker = outbox.forConnection('default').marker;

    marker.mark([{ queue: QUEUE, id: ids[0] }]);
    await new Promise((resolve) => setTimeout(resolve, 100));

    expect(await dispatchedAt(ids[0])).toBeNull();
    expect(logger.lines('warn', 'TransactionalOutbox')).toEqual([]);
  });
});
