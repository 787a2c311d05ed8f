import { INestApplication, Injectable } from '@nestjs/common';
import {
  InjectTransactionAwareQueue,
  Propagation,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
  TransactionRunner,
} from '../src';
import { Order } from './support/order.entity';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
} from './support/lib-app';
import { dbQuery } from './support/db';

const QUEUE = uniqueName('concurrent-nested');
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

@Injectable()
class Steps {
  readonly log: string[] = [];

  constructor(
    private readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(QUEUE)
    private readonly queue: TransactionAwareQueue<{ label: string }>,
  ) {}

  /** Writes a row and queues its job, in a savepoint; fails after a pause if asked. */
  @Transactional({ propagation: Propagation.Nested })
  async nested(label: string, fail: boolean, jobs: Map<string, string>) {
    this.log.push(`${label} start`);
    await this.tx.getRepository(Order).save({ label });
    jobs.set(label, await this.queue.add({ label }));
    this.tx.afterRollback(() => this.log.push(`${label} after-rollback`));
    await pause(5);
    this.log.push(`${label} end`);
    if (fail) throw new Error(`${label} failed`);
  }

  /** A plain write + job of the outer scope, made while sibling savepoints may be open. */
  async plain(label: string, jobs: Map<string, string>) {
    await this.tx.getRepository(Order).save({ label });
    jobs.set(label, await this.queue.add({ label }));
  }
}

describe('when NESTED scopes of one transaction run concurrently', () => {
  let app: INestApplication;
  let steps: Steps;
  let host: TransactionHost;

  const committedLabels = async (prefix: string) =>
    new Set(
      (
        await dbQuery(
          host.manager,
          `SELECT label FROM tx_spec_orders WHERE label LIKE $1`,
          [`${prefix}%`],
        )
      ).map((row: { label: string }) => row.label),
    );

  beforeAll(async () => {
    app = await createLibApp({
      providers: [Steps],
      queues: [{ name: QUEUE }],
      listen: false,
    });
    steps = app.get(Steps);
    host = app.get(TransactionHost);
  });

  afterAll(() => closeLibApp(app, [QUEUE]));

  it('should serialise their savepoints and keep each job exactly where its row is', async () => {
    const prefix = uniqueName('siblings');
    const jobs = new Map<string, string>();
    const plan = Array.from({ length: 8 }, (_, i) => ({
      label: `${prefix}-${i}`,
      fail: i % 3 === 1,
    }));
    steps.log.length = 0;

    await host.withTransaction(async () => {
      const results = await Promise.allSettled([
        ...plan.map((step) => steps.nested(step.label, step.fail, jobs)),
        steps.plain(`${prefix}-plain`, jobs),
      ]);
      expect(results.map((r) => r.status)).toEqual([
        ...plan.map((step) => (step.fail ? 'rejected' : 'fulfilled')),
        'fulfilled',
      ]);
    });

    // One savepoint at a time: every start is followed by its own end.
    const order = steps.log.filter((line) => !line.endsWith('after-rollback'));
    for (let i = 0; i < order.length; i += 2) {
      expect(order[i].replace(' start', '')).toBe(
        order[i + 1].replace(' end', ''),
      );
    }
    const rows = await committedLabels(prefix);
    const queue = bullQueue(app, QUEUE);
    for (const [label, jobId] of jobs) {
      expect([label, await inRedis(queue, jobId)]).toEqual([
        label,
        rows.has(label),
      ]);
    }
    for (const step of plan) expect(rows.has(step.label)).toBe(!step.fail);
    expect(
      steps.log.filter((line) => line.endsWith('after-rollback')).sort(),
    ).toEqual(
      plan
        .filter((step) => step.fail)
        .map((step) => `${step.label} after-rollback`)
        .sort(),
    );
  });

  it('should keep the job of a concurrent plain write with its row when the open savepoint rolls back', async () => {
    const prefix = uniqueName('plain-beside');
    const jobs = new Map<string, string>();
    await host.withTransaction(async () => {
      await Promise.allSettled([
        steps.nested(`${prefix}-nested`, true, jobs),
        (async () => {
          await pause(1);
          await steps.plain(`${prefix}-plain`, jobs);
        })(),
      ]);
    });
    const rows = await committedLabels(prefix);
    const queue = bullQueue(app, QUEUE);
    for (const [label, jobId] of jobs) {
      expect([label, await inRedis(queue, jobId)]).toEqual([
        label,
        rows.has(label),
      ]);
    }
  });

  it('should run the after-rollback hook of a NESTED scope once the outer transaction has ended, so it can touch rows the outer transaction locked', async () => {
    const label = uniqueName('locked');
    const runner = app.get(TransactionRunner);
    const failures = runner.stats.hookFailures;
    const log: string[] = [];
    let orderId = '';

    await host.withTransaction(async () => {
      orderId = (await host.getRepository(Order).save({ label })).id;
      await host
        .withTransaction(
          async () => {
            host.afterRollback(async () => {
              log.push(`hook runs (outer active: ${host.isActive})`);
              // A separate connection: it waits for the outer transaction's row lock.
              await dbQuery(
                host.manager,
                `UPDATE tx_spec_orders SET label = $1 WHERE id = $2`,
                [`${label}-compensated`, orderId],
              );
              log.push('hook updated the row');
            });
            throw new Error('savepoint rolled back');
          },
          { propagation: Propagation.Nested },
        )
        .catch(() => log.push('outer caught'));
      log.push('outer returns');
    });
    log.push('outer committed');

    expect(log).toEqual([
      'outer caught',
      'outer returns',
      'hook runs (outer active: false)',
      'hook updated the row',
      'outer committed',
    ]);
    expect(runner.stats.hookFailures).toBe(failures);
    expect(await committedLabels(`${label}-compensated`)).toEqual(
      new Set([`${label}-compensated`]),
    );
  });
});
