import type { Job } from 'bull';
import type { DeliveryJob } from '../src/deliveries/delivery-queue';
import { deliveryApi } from './support/delivery-api';
import {
  E2E_BULL_PREFIX,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

/** Events published while the endpoint's only slot is held. */
const WAITING = 5;

describe('when events arrive for an endpoint whose slots are all taken', () => {
  let svc: E2eApp;
  let receiver: Receiver;
  let release: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  /**
   * Delivery job ids that Bull handed to this process's worker. The queue is shared with the
   * deliveries other specs left in the database (the reconciler's laps re-enqueue those that are
   * due): only this spec's count.
   */
  const active: string[] = [];
  let client: ReturnType<typeof deliveryApi>;
  let endpointId: string;
  let first: string;
  let waiting: string[];
  const parkedKey = () => `${E2E_BULL_PREFIX}:endpoint-parked:${endpointId}`;

  beforeAll(async () => {
    svc = await startE2eApp({
      perEndpointConcurrency: 1,
      workerConcurrency: 4,
      deliveryTimeoutMs: 10_000,
    });
    svc.queue.on('active', (job: Job<DeliveryJob>) =>
      active.push(String(job.id)),
    );
    // The first request is held until the test lets it go; the others are answered at once.
    receiver = await startReceiver((n, _req, res) => {
      if (n === 0) void held.then(() => res.end('ok'));
      else res.end('ok');
    });
    client = deliveryApi(svc, await svc.createAccount());
    endpointId = (await client.createEndpoint(receiver.url, ['trip.delayed']))
      .id;
    first = (await client.publish('trip.delayed', { n: 0 })).id;
    await eventually(
      () => receiver.received.length === 1,
      'the first request to be held',
    );
    waiting = [];
    for (let n = 1; n <= WAITING; n++) {
      waiting.push((await client.publish('trip.delayed', { n })).id);
    }
  });

  afterAll(async () => {
    release?.();
    await svc?.close();
    await receiver?.close();
  });

  it('should park their jobs as they are enqueued, in order, without a job in the queue', async () => {
    const redis = svc.queue.client;
    const parked = await eventually(async () => {
      const ids = await redis.zrange(parkedKey(), 0, -1);
      return ids.length === WAITING && ids;
    }, `${WAITING} parked jobs`);
    const deliveryIds = await Promise.all(
      waiting.map(async (eventId) => (await client.log(eventId))[0].id),
    );
    expect(parked).toEqual(deliveryIds.map((id) => `${id}:1`));
    for (const jobId of parked)
      expect(await svc.queue.getJob(jobId)).toBeNull();
    const queued = await svc.queue.getJobs(['waiting', 'delayed']);
    expect(
      queued.filter((job) => deliveryIds.includes(job.data.deliveryId)),
    ).toEqual([]);
  });

  it('should cost no Postgres write and no Redis write while they wait', async () => {
    const redis = svc.queue.client;
    const deliveryIds = await Promise.all(
      waiting.map(async (eventId) => (await client.log(eventId))[0].id),
    );
    // A row's xmin changes with every UPDATE of it (and a lock taken FOR UPDATE leaves xmax).
    const rows = () =>
      svc.dataSource.query(
        `SELECT id, xmin::text AS xmin, status, next_attempt_at
           FROM deliveries WHERE id = ANY($1::uuid[]) ORDER BY id`,
        [deliveryIds],
      );
    const parked = async () => ({
      order: await redis.zrange(parkedKey(), 0, -1, 'WITHSCORES'),
      data: await redis.hgetall(
        `${E2E_BULL_PREFIX}:endpoint-parked-data:${endpointId}`,
      ),
    });
    const before = { rows: await rows(), parked: await parked() };
    expect(before.rows).toHaveLength(WAITING);
    // Three of the reconciler's laps (1 s here), and longer than a deferral used to wait.
    await new Promise((resolve) => setTimeout(resolve, 3500));
    expect({ rows: await rows(), parked: await parked() }).toEqual(before);
    // No job of theirs went through the queue (the only one is the held delivery's).
    expect(
      active.filter((jobId) => deliveryIds.includes(jobId.split(':')[0])),
    ).toEqual([]);
  });

  it('should send them, each once and in order, through the slot that frees, never as queue jobs', async () => {
    release();
    for (const eventId of [first, ...waiting]) {
      await client.deliveryWhen(
        eventId,
        (d) => d.status === 'succeeded',
        `delivery of ${eventId}`,
      );
    }
    expect(receiver.received.map((r) => r.headers['webhook-id'])).toEqual([
      first,
      ...waiting,
    ]);
    const firstDelivery = (await client.log(first))[0].id;
    const ours = new Set(
      await Promise.all(
        [first, ...waiting].map(
          async (eventId) => (await client.log(eventId))[0].id,
        ),
      ),
    );
    expect(active.filter((jobId) => ours.has(jobId.split(':')[0]))).toEqual([
      `${firstDelivery}:1`,
    ]);
    expect(await svc.queue.client.exists(parkedKey())).toBe(0);
  });
});
