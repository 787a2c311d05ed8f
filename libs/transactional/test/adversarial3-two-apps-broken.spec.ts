/**
 * Adversarial 3: two applications (same queue names, same outbox table, relays on in both)
 * commit durable jobs concurrently while one application's Redis connection is broken (a TCP
 * proxy between it and Redis drops its sockets, or swallows its traffic). Each committed job is
 * processed exactly once, none is lost, none of a rolled-back transaction reaches Redis.
 */
import { INestApplication } from '@nestjs/common';
import type { Queue } from 'bull';
import { AddressInfo, createServer, Server, Socket, connect } from 'net';
import { DataSource } from 'typeorm';
import {
  getTransactionAwareQueueToken,
  TransactionalModuleOptions,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import {
  OwnRedis,
  startOwnRedis,
} from '../../../test/faults/support/own-redis';
import { uniqueName } from './support/env';
import { dbQuery, openDataSource } from './support/db';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
  processJobs,
  redisStatus,
  waitFor,
} from './support/lib-app';
import { Order } from './support/order.entity';
import { createOutboxTable } from './support/outbox-table';
import { watchProcessFailures } from './support/process-failures';

jest.setTimeout(60_000);

const failures = watchProcessFailures();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A TCP proxy to `port` whose traffic the spec can cut (`drop`), swallow (`blackhole`) or restore. */
interface Proxy {
  url: string;
  /** Destroys every open socket and every new one at once. */
  drop(): void;
  /** Keeps sockets open but forwards nothing, either way. */
  blackhole(): void;
  /** Forwards again (sockets dropped meanwhile reconnect on their own). */
  heal(): void;
  close(): Promise<void>;
}

async function startProxy(targetPort: number): Promise<Proxy> {
  let mode: 'ok' | 'drop' | 'blackhole' = 'ok';
  const pairs = new Set<[Socket, Socket]>();
  const server: Server = createServer((client) => {
    if (mode === 'drop') {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, '127.0.0.1');
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const forward = (from: Socket, to: Socket) =>
      from.on('data', (chunk) => {
        if (mode === 'ok') to.write(chunk);
      });
    forward(client, upstream);
    forward(upstream, client);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const destroyAll = () => {
    for (const [a, b] of pairs) {
      a.destroy();
      b.destroy();
    }
    pairs.clear();
  };
  return {
    url: `redis://127.0.0.1:${port}`,
    drop() {
      mode = 'drop';
      destroyAll();
    },
    blackhole() {
      mode = 'blackhole';
    },
    heal() {
      mode = 'ok';
    },
    async close() {
      destroyAll();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

const Q = uniqueName('adv3-2apps');
const TABLE = 'tx_adv3_outbox_2apps';

let redis: OwnRedis;
let proxy: Proxy;
let a: INestApplication;
let b: INestApplication;
let db: DataSource;
const processed = new Map<string, number>();

const options = (): TransactionalModuleOptions => ({
  afterCommitTimeoutMs: 1000,
  outbox: {
    tableName: TABLE,
    fastPathTimeoutMs: 300,
    relay: {
      graceMs: 700,
      pollIntervalMs: 100,
      redisTimeoutMs: 500,
      maxBackoffMs: 400,
      leaseMs: 3000,
    },
  },
});

beforeAll(async () => {
  redis = await startOwnRedis();
  proxy = await startProxy(redis.port);
  await createOutboxTable(TABLE);
  db = await openDataSource();
  a = await createLibApp({
    queues: [{ name: Q, durable: true, bull: { url: proxy.url } }],
    options: options(),
    listen: false,
  });
  b = await createLibApp({
    queues: [{ name: Q, durable: true, bull: { url: redis.url } }],
    options: options(),
    listen: false,
  });
  await bullQueue(a, Q).isReady();
  await bullQueue(b, Q).isReady();
  processJobs(b, Q, 10, async (job) => {
    processed.set(String(job.id), (processed.get(String(job.id)) ?? 0) + 1);
  });
});

afterAll(async () => {
  proxy?.heal();
  await closeLibApp(b, [Q]);
  await a?.close().catch(() => undefined);
  await proxy?.close();
  await db?.destroy();
  await redis?.stop();
  failures.dispose();
});

type Outcome = { app: 'a' | 'b'; committed: boolean; id?: string };

function burst(
  which: 'a' | 'b',
  app: INestApplication,
  tag: string,
  n: number,
): Promise<Outcome>[] {
  const host = app.get(TransactionHost);
  const q: TransactionAwareQueue<any> = app.get(
    getTransactionAwareQueueToken(Q),
  );
  return Array.from({ length: n }, async (_, i) => {
    let id: string | undefined;
    try {
      await host.withTransaction(async () => {
        await host
          .getRepository(Order)
          .insert({ label: `${tag}-${which}-${i}` });
        // generated job ids for half, caller-chosen for the other half
        id = await q.add(
          { which, i },
          i % 2 === 0 ? { jobId: `${tag}-${which}-${i}` } : {},
        );
        if (i % 5 === 4) throw new Error('rollback on purpose');
      });
      return { app: which, committed: true, id };
    } catch {
      return { app: which, committed: false, id };
    }
  });
}

async function verify(tag: string, outcomes: Outcome[]) {
  const committed = outcomes.filter((o) => o.committed);
  const rolledBack = outcomes.filter((o) => !o.committed);
  expect(committed.length).toBe(48);
  const bq: Queue = bullQueue(b, Q);
  await waitFor(
    () => committed.every((o) => processed.get(o.id!) === 1),
    `${tag}: every committed job processed`,
    30_000,
  );
  await waitFor(
    async () => {
      const [row] = await dbQuery(
        db,
        `SELECT count(*)::int AS n FROM ${TABLE} WHERE dispatched_at IS NULL`,
      );
      return Number(row.n) === 0;
    },
    `${tag}: outbox drained`,
    20_000,
  );
  await sleep(1500);
  const dupes = committed.filter((o) => processed.get(o.id!) !== 1);
  expect(dupes.map((o) => [o.app, o.id, processed.get(o.id!)])).toEqual([]);
  for (const o of rolledBack) {
    expect(await inRedis(bq, o.id!)).toBe(false);
    expect(processed.has(o.id!)).toBe(false);
  }
}

it("A's connection dropped: both apps commit 30 durable jobs each at once; each committed job processed exactly once", async () => {
  const tag = uniqueName('drop');
  proxy.drop();
  await waitFor(
    () => redisStatus(bullQueue(a, Q)) !== 'ready',
    'A disconnected',
    5000,
  );
  const outcomes = await Promise.all([
    ...burst('a', a, tag, 30),
    ...burst('b', b, tag, 30),
  ]);
  await sleep(2000); // A's relay fails meanwhile; B's must take A's rows
  await verify(tag, outcomes);
  proxy.heal();
  await waitFor(
    () => redisStatus(bullQueue(a, Q)) === 'ready',
    'A reconnected',
    20_000,
  );
});

it("A's connection swallowed (blackhole) during the commits, then dropped and healed: each committed job processed exactly once", async () => {
  const tag = uniqueName('hole');
  proxy.blackhole();
  const all = Promise.all([
    ...burst('a', a, tag, 30),
    ...burst('b', b, tag, 30),
  ]);
  const outcomes = await all;
  await sleep(2500); // A's fast path and relay time out on the swallowed connection
  proxy.drop();
  await sleep(500);
  proxy.heal(); // A reconnects; ioredis resends what it had in flight
  await waitFor(
    () => redisStatus(bullQueue(a, Q)) === 'ready',
    'A reconnected',
    20_000,
  );
  await verify(tag, outcomes);
});

it('no unhandled rejection or uncaught exception', async () => {
  await sleep(200);
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
});
