/** Red-team round 3: an afterCommit hook that calls app.close(). */
import { INestApplication } from '@nestjs/common';
import type { Queue } from 'bull';
import {
  TransactionAwareQueue,
  TransactionHost,
  getTransactionAwareQueueToken,
} from '../src';
import { uniqueName } from './support/env';
import { bullQueue, createLibApp, inRedis } from './support/lib-app';
import { Order } from './support/order.entity';
import { watchProcessFailures } from './support/process-failures';

const Q = uniqueName('rt3-close');
const failures = watchProcessFailures();

afterAll(() => failures.dispose());

it('hook calling app.close(): caller resolves within the deadline, close() resolves, earlier job enqueued, no crash', async () => {
  const app: INestApplication = await createLibApp({
    queues: [{ name: Q }],
    // NOTE: close() in a hook waits for that hook's own step: shutdownTimeoutMs (10 s by default).
    options: { afterCommitTimeoutMs: 1000, shutdownTimeoutMs: 1000 },
    listen: false,
  });
  const host = app.get(TransactionHost);
  const q: TransactionAwareQueue<any> = app.get(
    getTransactionAwareQueueToken(Q),
  );
  const bull: Queue = bullQueue(app, Q);
  const jobId = uniqueName('j');
  let closeP: Promise<unknown> | undefined;
  const t0 = Date.now();
  await host.withTransaction(async () => {
    await host.getRepository(Order).insert({ label: jobId });
    await q.add({}, { jobId });
    await host.afterCommit(() => {
      closeP = app.close();
      return closeP;
    });
  });
  const callerMs = Date.now() - t0;
  expect(callerMs).toBeLessThan(3000);
  const closed = await Promise.race([
    closeP!.then(
      () => 'closed',
      (e) => `close rejected: ${e}`,
    ),
    new Promise((r) => setTimeout(() => r('close HANG'), 15_000).unref()),
  ]);
  expect(closed).toBe('closed');
  // job was flushed before the hook (registration order)
  const { default: Bull } = await import('bull');
  const probe = new Bull(Q, process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  expect(await inRedis(probe, jobId)).toBe(true);
  await probe.obliterate({ force: true }).catch(() => undefined);
  await probe.close();
  void bull;
  await new Promise((r) => setTimeout(r, 100));
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
}, 30_000);
