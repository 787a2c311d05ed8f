/**
 * adversarial8 (flows, faults): a Redis of the spec's own (never the shared one) paused with
 * CLIENT PAUSE, or killed, around the commit of a transaction that added BullMQ flows, and
 * app.close() during a flow's hand-over. README "Flows": a committed flow reaches Redis whole,
 * or (not durable) is counted in stats.failed and logged; never half; rolled-back flows never;
 * callers get clear errors; no unhandled rejection.
 */
import { BullModule } from '@nestjs/bullmq';
import Redis from 'ioredis';
import {
  FlowJobIds,
  getTransactionAwareFlowProducerToken,
  TransactionalModule,
  TransactionAwareFlowProducer,
  TransactionHost,
} from '../src';
import {
  OwnRedis,
  startOwnRedis,
} from '../../../test/faults/support/own-redis';
import { uniqueName } from './support/env';
import { closeLibApp, createLibApp, waitFor } from './support/lib-app';
import { Order } from './support/order.entity';
import {
  nextMacrotask,
  watchProcessFailures,
} from './support/process-failures';
import { describeBullMQOnly } from './support/queue-kind';

jest.setTimeout(20_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const A = uniqueName('a8ff-a');
const B = uniqueName('a8ff-b');

function flowOf(tag: string): any {
  return {
    name: 'p',
    queueName: A,
    data: { tag },
    opts: { jobId: `${tag}-p` },
    children: [
      {
        name: 'm',
        queueName: B,
        data: {},
        opts: { jobId: `${tag}-m`, failParentOnFailure: true },
        children: [
          { name: 'l', queueName: A, data: {}, opts: { jobId: `${tag}-l1` } },
          {
            name: 'l',
            queueName: B,
            data: {},
            opts: { jobId: `${tag}-l2`, delay: 60_000 },
          },
        ],
      },
      { name: 'c', queueName: B, data: {}, opts: { jobId: `${tag}-c` } },
    ],
  };
}

function nodes(ids: FlowJobIds): FlowJobIds[] {
  return [ids, ...(ids.children ?? []).flatMap(nodes)];
}

describeBullMQOnly('adversarial8: flows vs Redis faults and shutdown', () => {
  const failures = watchProcessFailures();
  let redis: OwnRedis;
  let admin: Redis;

  beforeAll(async () => {
    redis = await startOwnRedis();
    admin = redis.client();
  });

  afterAll(async () => {
    redis?.resume();
    admin?.disconnect();
    await redis?.stop();
    failures.dispose();
  });

  async function makeApp(options: Record<string, unknown> = {}) {
    const FLOWS = uniqueName('a8ff-flows');
    const app = await createLibApp({
      queues: [
        { name: A, bull: { url: redis.url } },
        { name: B, bull: { url: redis.url } },
      ],
      imports: [
        BullModule.registerFlowProducer({
          name: FLOWS,
          connection: { host: '127.0.0.1', port: redis.port },
        }),
        TransactionalModule.registerFlowProducer({ name: FLOWS }),
      ],
      options: { afterCommitTimeoutMs: 500, ...options },
      listen: false,
    });
    const flows: TransactionAwareFlowProducer = app.get(
      getTransactionAwareFlowProducerToken(FLOWS),
    );
    await flows.flowProducer.waitUntilReady();
    return { app, flows, host: app.get(TransactionHost) };
  }

  const key = (n: FlowJobIds) => `bull:${n.queueName}:${n.id}`;

  /** 'whole', 'none', or the keys of a half-existing flow. */
  async function shape(ids: FlowJobIds): Promise<string> {
    const present: string[] = [];
    for (const n of nodes(ids)) {
      if ((await admin.exists(key(n))) === 1) present.push(key(n));
    }
    if (present.length === 0) return 'none';
    if (present.length < nodes(ids).length) return `half: ${present}`;
    for (const n of nodes(ids)) {
      if (!n.children) continue;
      const deps = await admin.smembers(`${key(n)}:dependencies`);
      if (deps.length !== n.children.length)
        return `half: ${key(n)} has ${deps.length}/${n.children.length} dependencies`;
    }
    return 'whole';
  }

  it('CLIENT PAUSE WRITE over the commit: the caller is released by the deadline; the committed flow lands whole after the pause, the rolled-back one never', async () => {
    const { app, flows, host } = await makeApp();
    try {
      const tag = uniqueName('paused');
      let kept!: FlowJobIds;
      let dropped!: FlowJobIds;
      await host
        .withTransaction(async () => {
          dropped = await flows.add(flowOf(`${tag}-rb`));
          throw new Error('rollback');
        })
        .catch(() => undefined);
      const t0 = Date.now();
      await host.withTransaction(async () => {
        await host.getRepository(Order).insert({ label: tag });
        kept = await flows.add(flowOf(tag));
        await admin.call('CLIENT', 'PAUSE', '1500', 'WRITE');
      });
      const waited = Date.now() - t0;
      expect(waited).toBeLessThan(1400);
      await waitFor(
        async () => (await shape(kept)) === 'whole',
        'the flow',
        5000,
      );
      expect(await shape(dropped)).toBe('none');
      await waitFor(() => flows.stats.enqueued === 1, 'stats.enqueued');
      expect(flows.stats).toEqual({ deferred: 2, enqueued: 1, failed: 0 });
    } finally {
      await admin.call('CLIENT', 'UNPAUSE').catch(() => undefined);
      await closeLibApp(app, [A, B]);
    }
  });

  it('Redis killed before the commit: commit succeeds, the flow is counted failed at once, no unhandled rejection; after a restart nothing half-exists', async () => {
    const { app, flows, host } = await makeApp();
    try {
      const tag = uniqueName('killed');
      let ids!: FlowJobIds;
      const t0 = Date.now();
      await host.withTransaction(async () => {
        await host.getRepository(Order).insert({ label: tag });
        ids = await flows.add(flowOf(tag));
        await redis.kill();
        await sleep(100);
      });
      expect(Date.now() - t0).toBeLessThan(1500);
      expect(await host.getRepository(Order).countBy({ label: tag })).toBe(1);
      await waitFor(() => flows.stats.failed === 1, 'stats.failed', 3000);
      await redis.restart();
      admin.disconnect();
      admin = redis.client();
      expect(await shape(ids)).toBe('none');
    } finally {
      if (!redis.pid) await redis.restart();
      await closeLibApp(app, [A, B]);
    }
  });

  it('Redis SIGSTOPped over the commit then killed: the flow is settled once (enqueued or counted failed) and never half-exists', async () => {
    const { app, flows, host } = await makeApp();
    try {
      const tag = uniqueName('stopped');
      let ids!: FlowJobIds;
      await host.withTransaction(async () => {
        ids = await flows.add(flowOf(tag));
        redis.pause();
      });
      await sleep(100);
      await redis.kill();
      await redis.restart();
      admin.disconnect();
      admin = redis.client();
      // NOTE: OwnRedis.kill() sends SIGCONT first: the stopped server may run the flow's
      // MULTI just before dying (no persistence), so "enqueued" and then lost with the data is
      // a legitimate outcome. What must hold: the flow settles (counted once), never half.
      await waitFor(
        () => flows.stats.failed + flows.stats.enqueued === 1,
        'the flow settled (enqueued or counted failed)',
        8000,
      );
      expect(await shape(ids)).not.toMatch(/^half/);
    } finally {
      redis.resume();
      await closeLibApp(app, [A, B]);
    }
  });

  it('app.close() while a transaction that added a flow is still open: the flow is whole after the commit, or the failure is counted (never counted enqueued but absent)', async () => {
    const { app, flows, host } = await makeApp({ shutdownTimeoutMs: 3000 });
    const tag = uniqueName('closing');
    let ids!: FlowJobIds;
    let closed: Promise<void> | undefined;
    const outcome = await host
      .withTransaction(async () => {
        await host.getRepository(Order).insert({ label: tag });
        ids = await flows.add(flowOf(tag));
        closed = app.close();
        await sleep(300);
      })
      .then(
        () => 'committed',
        (e: unknown) => `rejected: ${String(e)}`,
      );
    await closed;
    const s = await shape(ids);
    expect({ outcome, shape: s, stats: flows.stats }).toEqual(
      s === 'whole'
        ? {
            outcome,
            shape: 'whole',
            stats: { deferred: 1, enqueued: 1, failed: 0 },
          }
        : {
            outcome,
            shape: 'none',
            stats: expect.objectContaining({ enqueued: 0 }),
          },
    );
    for (const n of nodes(ids)) await admin.del(key(n));
  });

  it('app.close() while a committed flow is being handed to a paused Redis: whole after the pause, or counted failed; never counted enqueued but absent', async () => {
    const { app, flows, host } = await makeApp({ shutdownTimeoutMs: 3000 });
    const tag = uniqueName('close-paused');
    let ids!: FlowJobIds;
    try {
      await host.withTransaction(async () => {
        ids = await flows.add(flowOf(tag));
        await admin.call('CLIENT', 'PAUSE', '1000', 'WRITE');
      });
      await app.close();
    } finally {
      await admin.call('CLIENT', 'UNPAUSE').catch(() => undefined);
    }
    await sleep(200);
    const s = await shape(ids);
    expect(s.startsWith('half')).toBe(false);
    expect({
      shape: s,
      counted: flows.stats.enqueued + flows.stats.failed,
      enqueuedButAbsent: flows.stats.enqueued === 1 && s !== 'whole',
    }).toEqual({ shape: s, counted: 1, enqueuedButAbsent: false });
    for (const n of nodes(ids)) await admin.del(key(n));
  });

  it('no unhandled rejection or uncaught exception', async () => {
    await nextMacrotask();
    expect(failures.unhandledRejections).toEqual([]);
    expect(failures.uncaughtExceptions).toEqual([]);
  });
});
