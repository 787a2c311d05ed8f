import { INestApplication } from '@nestjs/common';
import type { Queue } from 'bull';
import { DataSource } from 'typeorm';
import {
  OutboxOptions,
  TransactionalModuleOptions,
  TransactionAwareQueue,
  TransactionHost,
  getTransactionAwareQueueToken,
} from '../../src';
import { bullQueue, closeLibApp, createLibApp } from './lib-app';
import { createOutboxTable } from './outbox-table';
import { watchProcessFailures } from './process-failures';

/** What `useAdversarialApp` builds a spec's app from. */
export interface AdversarialAppSpec {
  /** Name of the plain queue (made transaction-aware, not durable). */
  plain: string;
  /** Name of the durable queue (its jobs go through the outbox). */
  durable: string;
  /** The outbox table: dropped and created (`createOutboxTable`) before the app starts. */
  outboxTable: string;
  /**
   * Outbox options of the app (`tableName` is `outboxTable`). Default, when left out:
   * `DEFAULT_ADVERSARIAL_OUTBOX`.
   */
  outbox?: Omit<OutboxOptions, 'tableName'>;
  /** The app's other `TransactionalModule.forRoot` options (e.g. `afterCommitTimeoutMs`). */
  moduleOptions?: Omit<TransactionalModuleOptions, 'outbox'>;
  /** Size of the app's Postgres (or MariaDB) pool. Default: `createLibApp`'s. */
  poolSize?: number;
  /**
   * Whether to watch the process for unhandled rejections and uncaught exceptions
   * (`watchProcessFailures`) and expect none after each test. Default: true.
   */
  watchFailures?: boolean;
  /** Runs before the app closes, if it started (e.g. to drop a spec's own tables through `ds`). */
  beforeClose?: (app: AdversarialApp) => Promise<unknown>;
}

/**
 * Outbox options of a spec app that leaves them out: the fast path's default timeout (300 ms),
 * its dispatched marks written within 1 ms, and the relay on, taking rows 200 ms after their
 * commit and polling every 20 ms.
 */
export const DEFAULT_ADVERSARIAL_OUTBOX: Omit<OutboxOptions, 'tableName'> = {
  fastPathTimeoutMs: 300,
  markBatchDelayMs: 1,
  relay: { enabled: true, graceMs: 200, pollIntervalMs: 20 },
};

/**
 * Outbox options of a spec that runs the relay by hand (`relayOnce()`): the relay's loop is off,
 * every durable row is eligible for it at once (`graceMs` 0), and a row that fails backs off at
 * most 100 ms.
 */
export const RELAY_BY_HAND: Omit<OutboxOptions, 'tableName'> = {
  relay: { enabled: false, graceMs: 0, pollIntervalMs: 50, maxBackoffMs: 100 },
};

/** A spec's app and what its tests use of it; set by `useAdversarialApp`'s `beforeAll`. */
export interface AdversarialApp {
  nest: INestApplication;
  host: TransactionHost;
  plain: TransactionAwareQueue<any>;
  durable: TransactionAwareQueue<any>;
  /** The plain queue's Bull (or BullMQ, see `bullQueue`) queue. */
  plainBull: Queue;
  /** The durable queue's Bull (or BullMQ, see `bullQueue`) queue. */
  durableBull: Queue;
  ds: DataSource;
}

/**
 * Registers, in the calling `describe` (or file), the hooks of a spec app with a plain and a
 * durable queue and an outbox table (`createLibApp`, not listening): `beforeAll` creates the
 * table and starts the app, `afterAll` obliterates both queues and closes it (`closeLibApp`),
 * and, unless `watchFailures` is false, `afterEach` expects no process failure since the call.
 * Returns the object the `beforeAll` fills in: read its fields in hooks and tests only.
 */
export function useAdversarialApp(spec: AdversarialAppSpec): AdversarialApp {
  const failures =
    spec.watchFailures === false ? undefined : watchProcessFailures();
  const app = {} as AdversarialApp;

  beforeAll(async () => {
    await createOutboxTable(spec.outboxTable);
    const nest = await createLibApp({
      queues: [{ name: spec.plain }, { name: spec.durable, durable: true }],
      options: {
        ...spec.moduleOptions,
        outbox: {
          ...(spec.outbox ?? DEFAULT_ADVERSARIAL_OUTBOX),
          tableName: spec.outboxTable,
        },
      },
      poolSize: spec.poolSize,
      listen: false,
    });
    Object.assign(app, {
      nest,
      host: nest.get(TransactionHost),
      plain: nest.get(getTransactionAwareQueueToken(spec.plain)),
      durable: nest.get(getTransactionAwareQueueToken(spec.durable)),
      plainBull: bullQueue(nest, spec.plain),
      durableBull: bullQueue(nest, spec.durable),
      ds: nest.get(DataSource),
    } satisfies AdversarialApp);
  });

  afterAll(async () => {
    if (app.nest && spec.beforeClose) await spec.beforeClose(app);
    await closeLibApp(app.nest, [spec.plain, spec.durable]);
    failures?.dispose();
  });

  if (failures) {
    afterEach(() => {
      expect(failures.unhandledRejections).toEqual([]);
      expect(failures.uncaughtExceptions).toEqual([]);
    });
  }

  return app;
}
