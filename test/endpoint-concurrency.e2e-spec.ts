import { deliveryApi } from './support/delivery-api';
import {
  E2E_BULL_PREFIX,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

/** How long the slow receiver holds each request. */
const HOLD_MS = 2_000;
/** Events queued for the slow endpoint. */
const BACKLOG = 8;
/** Deliveries one worker sends at once. */
const WORKER_CONCURRENCY = 6;

/** A receiver that answers after HOLD_MS and counts the requests it holds at once. */
async function startSlowReceiver() {
  const timers: NodeJS.Timeout[] = [];
  const stats = { inFlight: 0, maxInFlight: 0, answered: 0 };
  const receiver = await startReceiver((_n, _r, res) => {
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    let done = false;
    res.on('finish', () => stats.answered++);
    res.on('close', () => {
      if (!done) stats.inFlight--;
      done = true;
    });
    timers.push(setTimeout(() => res.end('ok'), HOLD_MS));
  });
  return {
    receiver,
    stats,
    async close() {
      timers.forEach(clearTimeout);
      await receiver.close();
    },
  };
}

/** Boots the service, queues a slow backlog, then one event for a fast endpoint. */
function slowAndFast(perEndpointConcurrency: number) {
  const ctx = {} as {
    svc: E2eApp;
    slow: Awaited<ReturnType<typeof startSlowReceiver>>;
    fast: Receiver;
    client: ReturnType<typeof deliveryApi>;
    slowEvents: string[];
    slowEndpointId: string;
    fastEvent: string;
    /** When the fast event was published. */
    fastPublishedAt: number;
    /** Slow requests answered when the fast one arrived. */
    slowAnsweredBeforeFast?: number;
  };

  beforeAll(async () => {
    ctx.svc = await startE2eApp({
      perEndpointConcurrency,
      workerConcurrency: WORKER_CONCURRENCY,
      deliveryTimeoutMs: 5_000,
    });
    ctx.slow = await startSlowReceiver();
    ctx.fast = await startReceiver((_n, _r, res) => {
      ctx.slowAnsweredBeforeFast ??= ctx.slow.stats.answered;
      res.end('ok');
    });
    ctx.client = deliveryApi(ctx.svc, await ctx.svc.createAccount());
    ctx.slowEndpointId = (
      await ctx.client.createEndpoint(ctx.slow.receiver.url, ['load.slow'])
    ).id;
    await ctx.client.createEndpoint(ctx.fast.url, ['load.fast']);
    // Published at once, so that the first requests are still held when the last is queued.
    const published = await Promise.all(
      Array.from({ length: BACKLOG }, (_, i) =>
        ctx.client.publish('load.slow', { i }),
      ),
    );
    ctx.slowEvents = published.map((event) => event.id);
    const busy = Math.min(perEndpointConcurrency, WORKER_CONCURRENCY);
    await eventually(
      () => ctx.slow.stats.inFlight === busy,
      `${busy} requests in flight to the slow endpoint`,
    );
    ctx.fastPublishedAt = Date.now();
    ctx.fastEvent = (await ctx.client.publish('load.fast')).id;
  });

  afterAll(async () => {
    // NOTE: closing the app first lets the requests in flight finish (Bull waits for them).
    await ctx.svc?.close();
    await ctx.fast?.close();
    await ctx.slow?.close();
  });

  return ctx;
}

describe('when one endpoint is slow and its limit is 2', () => {
  const ctx = slowAndFast(2);

  it('should deliver to a fast endpoint before the slow backlog drains', async () => {
    const got = await eventually(
      () => ctx.fast.received[0],
      'the fast delivery',
    );
    expect(got.headers['webhook-id']).toBe(ctx.fastEvent);
    expect(got.at - ctx.fastPublishedAt).toBeLessThan(HOLD_MS);
    expect(ctx.slow.receiver.received.length).toBeLessThan(BACKLOG);
    await ctx.client.deliveryWhen(
      ctx.fastEvent,
      (d) => d.status === 'succeeded',
      'the fast delivery to be recorded',
    );
  });

  it('should never have more than 2 requests in flight to the slow endpoint', async () => {
    const deliveryIds = new Set<string>();
    for (const id of ctx.slowEvents) {
      const [delivery] = await ctx.client.log(id);
      deliveryIds.add(delivery.id);
    }
    // Jobs waiting for their turn per delivery (in Bull, or parked for a slot of the
    // endpoint), sampled while the backlog drains: one job waits for its slot; the reconciler
    // must not take it for lost and add more.
    let drained = false;
    let mostQueued = 0;
    let mostParked = 0;
    const parkedKey = `${E2E_BULL_PREFIX}:endpoint-parked-data:${ctx.slowEndpointId}`;
    const sampling = (async () => {
      while (!drained) {
        const jobs = await ctx.svc.queue.getJobs(['waiting', 'delayed']);
        const parked = await ctx.svc.queue.client.hvals(parkedKey);
        mostParked = Math.max(mostParked, parked.length);
        const perDelivery = new Map<string, number>();
        for (const data of [
          ...jobs.map((job) => job?.data),
          ...parked.map((json) => JSON.parse(json)),
        ]) {
          const id = data?.deliveryId;
          if (deliveryIds.has(id))
            perDelivery.set(id, (perDelivery.get(id) ?? 0) + 1);
        }
        mostQueued = Math.max(mostQueued, ...perDelivery.values());
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();

    try {
      for (const id of ctx.slowEvents) {
        const delivery = await ctx.client.deliveryWhen(
          id,
          (d) => d.status === 'succeeded',
          'the slow delivery to succeed',
          30_000,
        );
        // Waiting for a slot is not an attempt.
        expect(delivery.attempts).toHaveLength(1);
      }
    } finally {
      drained = true;
      await sampling;
    }
    expect(mostQueued).toBe(1);
    // Waiting for a slot is parking in Redis, not a job bouncing through the queue.
    expect(mostParked).toBeGreaterThan(0);
    expect(ctx.slow.stats.maxInFlight).toBe(2);
    expect(
      ctx.slow.receiver.received.map((got) => got.headers['webhook-id']).sort(),
    ).toEqual([...ctx.slowEvents].sort());
  });
});

describe('when one endpoint is slow and its limit is the worker concurrency', () => {
  // The starvation the limit prevents: every worker slot waits on the slow endpoint.
  const ctx = slowAndFast(WORKER_CONCURRENCY);

  it('should make the fast endpoint wait for a slow request to finish', async () => {
    const got = await eventually(
      () => ctx.fast.received[0],
      'the fast delivery',
    );
    expect(ctx.slowAnsweredBeforeFast).toBeGreaterThanOrEqual(1);
    expect(got.at - ctx.fastPublishedAt).toBeGreaterThanOrEqual(HOLD_MS / 2);
    expect(ctx.slow.stats.maxInFlight).toBe(WORKER_CONCURRENCY);
  });
});
