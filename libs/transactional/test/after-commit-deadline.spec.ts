import { INestApplication, Injectable } from '@nestjs/common';
import { Transactional, TransactionHost, TransactionRunner } from '../src';
import { createLibApp } from './support/lib-app';

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

@Injectable()
class SlowHooks {
  readonly log: string[] = [];

  constructor(private readonly tx: TransactionHost) {}

  /** Registers `count` after-commit steps of `ms` each. */
  @Transactional()
  async run(count: number, ms: number) {
    for (let i = 1; i <= count; i++) {
      await this.tx.afterCommit(async () => {
        await pause(ms);
        this.log.push(`step ${i} done`);
      });
    }
  }
}

describe('when the after-commit work of one transaction takes longer than afterCommitTimeoutMs in total', () => {
  let app: INestApplication;

  beforeAll(async () => {
    app = await createLibApp({
      providers: [SlowHooks],
      queues: [],
      listen: false,
      options: { afterCommitTimeoutMs: 500 },
    });
  });

  it('should return to the caller at the one deadline of the whole phase, finish the steps in the background, and wait for them on shutdown', async () => {
    const service = app.get(SlowHooks);
    const runner = app.get(TransactionRunner);
    const detached = runner.stats.hookPhasesDetached;

    // Three steps of 400 ms: each under the timeout, 1.2 s together.
    await service.run(3, 400);
    service.log.push('caller returned');

    expect(service.log).toEqual(['step 1 done', 'caller returned']);
    expect(runner.stats.hookPhasesDetached).toBe(detached + 1);

    await app.close();
    expect(service.log).toEqual([
      'step 1 done',
      'caller returned',
      'step 2 done',
      'step 3 done',
    ]);
    expect(runner.stats.hookFailures).toBe(0);
  });
});
