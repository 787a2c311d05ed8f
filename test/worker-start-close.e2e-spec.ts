import type { Redis } from 'ioredis';
import { OwnRedis, startOwnRedis } from './faults/support/own-redis';
import { startE2eApp } from './support/harness';
import {
  nextMacrotask,
  watchProcessFailures,
} from '../libs/transactional/test/support/process-failures';

// A worker's Bull queue starts processing after the app is up; an app closed before that
// start-up is over must not leave Bull's rejected start-up promise unhandled (it failed a CI
// run, "Connection is closed.", and would end a real process with code 1).
describe('when a worker is closed before its queue has started', () => {
  let redis: OwnRedis;

  beforeAll(async () => {
    redis = await startOwnRedis();
  });

  afterAll(async () => {
    redis?.resume();
    await redis?.stop();
  });

  it('should close without an unhandled rejection from the queue it never started on', async () => {
    // NOTE: the real process's listeners: a spec's own `process` never sees these events.
    const watch = watchProcessFailures();
    try {
      for (let round = 0; round < 3; round++) {
        redis.pause();
        const app = await startE2eApp({
          redisUrl: redis.url,
          shutdownTimeoutMs: 300,
          healthCheckTimeoutMs: 200,
        });
        const closed = app.close();
        await new Promise((resolve) => setTimeout(resolve, 200 * round));
        redis.resume();
        await closed;
        // NOTE: Bull's close, started while Redis was frozen, leaves two of its clients
        // connected (a Bull limitation; a process would exit at its shutdown backstop).
        for (const client of (app.queue as unknown as { clients: Redis[] })
          .clients)
          client.disconnect();
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      await nextMacrotask();
    } finally {
      watch.dispose();
    }
    expect(watch.unhandledRejections).toEqual([]);
  }, 60_000);
});
