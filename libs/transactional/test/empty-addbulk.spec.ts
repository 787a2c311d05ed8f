/**
 * `addBulk([])` in a transaction resolves with no ids and leaves nothing behind: an empty batch
 * used to be deferred, and failed after the commit ("Cannot read properties of undefined"),
 * logged as a failed after-commit step.
 */
import { INestApplication } from '@nestjs/common';
import {
  getTransactionAwareQueueToken,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { CapturingLogger } from './support/capturing-logger';
import { uniqueName } from './support/env';
import { closeLibApp, createLibApp } from './support/lib-app';

const QUEUE = uniqueName('empty-bulk');

describe('addBulk([]) in a transaction', () => {
  const logger = new CapturingLogger();
  let app: INestApplication;

  beforeAll(async () => {
    app = await createLibApp({
      queues: [{ name: QUEUE }],
      listen: false,
      logger,
    });
  });

  afterAll(() => closeLibApp(app, [QUEUE]));

  it('resolves with [] and no after-commit step fails', async () => {
    const queue = app.get<TransactionAwareQueue<any>>(
      getTransactionAwareQueueToken(QUEUE),
    );
    const ids = await app
      .get(TransactionHost)
      .withTransaction(() => queue.addBulk([]));
    expect(ids).toEqual([]);
    expect(logger.lines('error').map((line) => line.message)).toEqual([]);
    expect(queue.stats).toMatchObject({ deferred: 0, failed: 0 });
  });
});
