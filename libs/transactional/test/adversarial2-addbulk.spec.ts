/**
 * Adversarial: an `addBulk()` with one job whose data the queue library cannot serialise
 * (`BigInt`, a cycle). Before, the add was accepted and, after the commit, the library's
 * `addBulk` threw for the whole batch: the valid jobs of a committed transaction were lost with
 * the bad one. Now the bad job is refused inside the transaction (`TransactionalError`), where
 * the caller can roll back or leave it out, and no job of the call is deferred.
 */
import { INestApplication } from '@nestjs/common';
import {
  getTransactionAwareQueueToken,
  TransactionAwareQueue,
  TransactionalError,
  TransactionHost,
} from '../src';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
} from './support/lib-app';

const PLAIN = uniqueName('adv2-bulk');

describe('adversarial2: addBulk with one job the queue library cannot serialise', () => {
  let app: INestApplication;
  const host = () => app.get(TransactionHost);
  const aware = () =>
    app.get<TransactionAwareQueue<any>>(getTransactionAwareQueueToken(PLAIN));

  beforeAll(async () => {
    app = await createLibApp({ queues: [{ name: PLAIN }], listen: false });
  });

  afterAll(() => closeLibApp(app, [PLAIN]));

  const cyclic = () => {
    const data: Record<string, unknown> = { n: 2 };
    data.self = data;
    return data;
  };

  it.each([
    ['a BigInt', () => ({ n: 2n })],
    ['a cycle', cyclic],
  ])(
    'should refuse the call inside the transaction for data with %s, and defer none of its jobs',
    async (_what, bad) => {
      const jobIds = [uniqueName('bulk-a'), uniqueName('bulk-c')];
      let refused: unknown;
      const kept = await host().withTransaction(async () => {
        refused = await aware()
          .addBulk([
            { data: { n: 1 }, opts: { jobId: jobIds[0] } },
            { data: bad() },
            { data: { n: 3 }, opts: { jobId: jobIds[1] } },
          ])
          .catch((e: unknown) => e);
        // The transaction goes on: a valid add after the refusal is enqueued on commit.
        return aware().add({ n: 4 });
      });
      expect(refused).toBeInstanceOf(TransactionalError);
      expect(String((refused as Error).message)).toMatch(
        /cannot be written as JSON/,
      );
      const queue = bullQueue(app, PLAIN);
      await new Promise((r) => setTimeout(r, 200));
      expect({
        refusedCall: [
          await inRedis(queue, jobIds[0]),
          await inRedis(queue, jobIds[1]),
        ],
        kept: await inRedis(queue, kept),
        failed: aware().stats.failed,
      }).toEqual({ refusedCall: [false, false], kept: true, failed: 0 });
    },
  );
});
