import { INestApplication } from '@nestjs/common';
import Bull from 'bull';
import { Worker } from 'bullmq';
import * as fc from 'fast-check';
import {
  getTransactionAwareQueueToken,
  TransactionalOutbox,
  OutboxOptions,
  TransactionAwareQueue,
  TransactionHost,
} from '../../src';
import { dbQuery } from './db';
import { closeLibApp, createLibApp } from './lib-app';
import { Order } from './order.entity';
import { createOutboxTable } from './outbox-table';
import { LIB_QUEUE } from './queue-kind';
import {
  fault,
  FaultKind,
  PersistentRedis,
  startPersistentRedis,
} from './persistent-redis';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One transaction of a scenario: when it starts, how many durable jobs it adds, its outcome. */
export interface TxSpec {
  startMs: number;
  jobs: number;
  commit: boolean;
}

/** One Redis fault of a scenario (see `fault` in persistent-redis.ts). */
export interface FaultSpec {
  kind: FaultKind;
  atMs: number;
  ms: number;
}

/** What a scenario did: ids of the jobs of committed and of rolled-back transactions. */
export interface ScenarioResult {
  committed: string[];
  dropped: string[];
  /** How long each transaction's caller waited (commit, and the fast path if any). */
  answeredMs: number[];
}

/** The app, Redis and consumer of a relay fault spec, set up by `relayFaultHarness`. */
export interface RelayFaultHarness {
  readonly queueName: string;
  readonly table: string;
  readonly redis: PersistentRedis;
  readonly host: TransactionHost;
  readonly outbox: TransactionalOutbox;
  readonly queue: TransactionAwareQueue<any>;
  /** Runs of each job id by the consumer (a separate Bull queue / BullMQ worker). */
  readonly runs: Map<string, number>;
  readonly consumerErrors: unknown[];
  /** Runs transactions and faults at once. */
  scenario(
    tag: string,
    txs: TxSpec[],
    faults: FaultSpec[],
  ): Promise<ScenarioResult>;
  /**
   * Whether the job `id` reached Redis: the consumer ran it, or Redis holds it with its data. (A
   * worker whose connection is killed between Bull's BRPOPLPUSH and its lock script leaves the
   * job in the active list until the queue library's stalled-job check, 30 s later: the job is
   * in Redis, its run is the worker's business.)
   */
  delivered(id: string): Promise<boolean>;
  allDelivered(ids: string[]): Promise<boolean>;
  /** Outbox rows of the scenario `tag` not yet dispatched. */
  pendingOf(tag: string): Promise<number>;
  /** Where the jobs `ids` are: their Redis hash, their outbox row, the lists, the counters. */
  diagnose(ids: string[]): Promise<string>;
}

/** The settings that differ between the relay fault specs. */
export interface RelayFaultHarnessSpec {
  /** Prefix of the queue name (made unique). */
  queueName: string;
  /** The outbox table (created, per process). */
  table: string;
  /** `TransactionalModule.forRoot`'s `outbox` options, on top of the harness' table name. */
  outbox: OutboxOptions;
  /** `removeOnComplete` of every job the scenarios add. */
  removeOnComplete: boolean;
}

/**
 * Registers `beforeAll`/`afterAll` that start an own redis-server (AOF, appendfsync always: see
 * persistent-redis.ts), an app with one durable queue on it and a consumer counting runs by job
 * id; returns the handle the spec's cases use once `beforeAll` has run.
 */
export function relayFaultHarness(
  spec: RelayFaultHarnessSpec,
): RelayFaultHarness {
  let redis!: PersistentRedis;
  let app: INestApplication | undefined;
  let host!: TransactionHost;
  let outbox!: TransactionalOutbox;
  let queue!: TransactionAwareQueue<any>;
  let consumer: { close(): Promise<unknown> } | undefined;
  const runs = new Map<string, number>();
  const consumerErrors: unknown[] = [];
  const name = spec.queueName;
  const table = spec.table;

  const startConsumer = () => {
    const handler = async (job: { id?: string | number | null }) => {
      const id = String(job.id);
      runs.set(id, (runs.get(id) ?? 0) + 1);
    };
    if (LIB_QUEUE === 'bull') {
      const q = new Bull(name, redis.url);
      q.on('error', (e) => consumerErrors.push(e));
      void q.process('*', 4, handler);
      consumer = q;
    } else {
      const w = new Worker(name, handler, {
        connection: { host: '127.0.0.1', port: redis.port },
        concurrency: 4,
      });
      w.on('error', (e) => consumerErrors.push(e));
      consumer = w;
    }
  };

  beforeAll(async () => {
    redis = await startPersistentRedis();
    await createOutboxTable(table);
    app = await createLibApp({
      queues: [{ name, durable: true, bull: { url: redis.url } }],
      options: {
        afterCommitTimeoutMs: 1000,
        outbox: { ...spec.outbox, tableName: table },
      },
      listen: false,
    });
    host = app.get(TransactionHost);
    outbox = app.get(TransactionalOutbox);
    queue = app.get(getTransactionAwareQueueToken(name));
    startConsumer();
  });

  afterAll(async () => {
    redis?.cont();
    await consumer?.close().catch(() => undefined);
    if (app) await closeLibApp(app, [name]).catch(() => undefined);
    await redis?.dispose();
  });

  /**
   * Whether the job `id` ran or waits in Redis. NOTE: a redis-cli call that fails is retried,
   * then throws: read as "not there" it once failed a case on a busy machine with no way to tell.
   */
  const delivered = async (id: string) => {
    if (runs.has(id)) return true;
    for (let attempt = 1; ; attempt++) {
      try {
        return (
          (await redis.cli('HEXISTS', `bull:${name}:${id}`, 'data')) === '1'
        );
      } catch (error) {
        if (runs.has(id)) return true;
        if (attempt === 3)
          throw new Error(`redis-cli HEXISTS for job ${id}: ${String(error)}`);
        await sleep(200);
      }
    }
  };

  return {
    queueName: name,
    table,
    get redis() {
      return redis;
    },
    get host() {
      return host;
    },
    get outbox() {
      return outbox;
    },
    get queue() {
      return queue;
    },
    runs,
    consumerErrors,
    delivered,
    async allDelivered(ids) {
      for (const id of ids) if (!(await delivered(id))) return false;
      return true;
    },
    async scenario(tag, txs, faults) {
      const committed: string[] = [];
      const dropped: string[] = [];
      const answeredMs: number[] = [];
      const t0 = Date.now();
      const faultLane = (async () => {
        for (const f of [...faults].sort((a, b) => a.atMs - b.atMs)) {
          const wait = t0 + f.atMs - Date.now();
          if (wait > 0) await sleep(wait);
          await fault(redis, f.kind, f.ms);
        }
      })();
      const txLane = Promise.all(
        txs.map(async (t, i) => {
          await sleep(t.startMs);
          const ids: string[] = [];
          const started = Date.now();
          try {
            await host.withTransaction(async () => {
              await host.getRepository(Order).insert({ label: `${tag}-${i}` });
              for (let j = 0; j < t.jobs; j++) {
                ids.push(
                  await queue.add(
                    'work',
                    { tag, i, j },
                    {
                      jobId: `${tag}-${i}-${j}`,
                      ...(spec.removeOnComplete
                        ? { removeOnComplete: true }
                        : {}),
                    },
                  ),
                );
              }
              if (!t.commit) throw new Error('rollback on purpose');
            });
            committed.push(...ids);
          } catch (error) {
            if (t.commit) throw error;
            dropped.push(...ids);
          } finally {
            answeredMs.push(Date.now() - started);
          }
        }),
      );
      await Promise.all([faultLane, txLane]);
      return { committed, dropped, answeredMs };
    },
    async pendingOf(tag) {
      const [row] = await dbQuery(
        host.manager.connection,
        `SELECT count(*)::int AS n FROM ${table} WHERE dispatched_at IS NULL AND opts->>'jobId' LIKE $1`,
        [`${tag}-%`],
      );
      return row.n;
    },
    async diagnose(ids) {
      const out: string[] = [];
      for (const id of ids) {
        const hash = await redis
          .cli('HGETALL', `bull:${name}:${id}`)
          .catch((e) => `cli error ${String(e)}`);
        const [row] = await dbQuery(
          host.manager.connection,
          `SELECT dispatched_at, available_at, relay_attempts, last_error FROM ${table} WHERE opts->>'jobId' = $1`,
          [id],
        );
        out.push(
          `${id}: redis=${JSON.stringify(hash.slice(0, 200))} row=${JSON.stringify(row)}`,
        );
      }
      const lists = await Promise.all(
        ['wait', 'active', 'completed', 'failed', 'delayed'].map(
          async (l) =>
            `${l}=${await redis.cli(l === 'wait' || l === 'active' ? 'LLEN' : 'ZCARD', `bull:${name}:${l}`).catch(() => '?')}`,
        ),
      );
      const last = consumerErrors[consumerErrors.length - 1];
      return `${out.join('\n')}\nlists ${lists.join(' ')} relay=${JSON.stringify(outbox.relayStats)} queue=${JSON.stringify(queue.stats)} consumerErrors=${consumerErrors.length} ${String(last)}`;
    },
  };
}

/** Random faults of every kind, `ms` long within the given bounds. */
export function faultArb(ms: { min: number; max: number }) {
  return fc.record({
    kind: fc.constantFrom<FaultKind>(
      'sigstop',
      'kill-restart',
      'client-pause-all',
      'client-pause-write',
      'debug-sleep',
      'oom',
      'client-kill',
    ),
    atMs: fc.integer({ min: 0, max: 1200 }),
    ms: fc.integer(ms),
  });
}

/** Random transactions: 1-3 jobs each, starting within 1.5 s, committing or not. */
export const txArb = fc.record({
  startMs: fc.integer({ min: 0, max: 1500 }),
  jobs: fc.integer({ min: 1, max: 3 }),
  commit: fc.boolean(),
});
