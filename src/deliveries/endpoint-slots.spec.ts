import Bull, { Queue } from 'bull';
import Redis from 'ioredis';
import { e2eRedisUrl } from '../../test/support/harness';
import {
  DELIVERY_JOB_OPTIONS,
  DELIVERY_QUEUE,
  DeliveryJob,
  deliveryJobId,
} from './delivery-queue';
import { EndpointSlots } from './endpoint-slots';

/**
 * `othersQueued`, the end-of-turn check of a slot holder (delivery-worker.ts, TURN_MS), on a real
 * Bull queue: a holder yields its worker only to jobs of other endpoints among the next ones the
 * queue hands out. Jobs of its own endpoint (retries, hand-backs) must not end its turn: they
 * would only wait for its slots again, and yielding to them cut one endpoint's throughput under
 * overload to 0.82 of the knee (the overload fault spec).
 */
describe('EndpointSlots.othersQueued', () => {
  const prefix = `slots-spec${process.env.TEST_DB_SUFFIX ?? ''}-${process.pid}`;
  let queue: Queue<DeliveryJob>;
  let redis: Redis;
  let slots: EndpointSlots;
  let n = 0;
  const add = (data: Partial<DeliveryJob>) =>
    queue.add(
      { deliveryId: `d${++n}`, ...data },
      { ...DELIVERY_JOB_OPTIONS, jobId: deliveryJobId(`d${n}`, 1) },
    );

  beforeAll(async () => {
    queue = new Bull(DELIVERY_QUEUE, e2eRedisUrl(), { prefix });
    redis = new Redis(e2eRedisUrl());
    slots = new EndpointSlots(redis, 4, 10_000, prefix);
    await queue.isReady();
  });

  beforeEach(() => queue.empty());

  afterAll(async () => {
    await queue.obliterate({ force: true });
    await queue.close();
    redis.disconnect();
  });

  it('should be false on an empty queue', async () => {
    expect(await slots.othersQueued('a', 50)).toBe(false);
  });

  it('should be false while every queued job is the endpoint’s own', async () => {
    for (let i = 0; i < 10; i++) await add({ endpointId: 'a' });
    expect(await slots.othersQueued('a', 50)).toBe(false);
    expect(await slots.othersQueued('b', 50)).toBe(true);
  });

  it('should be true when another endpoint’s job is among the next ones, wherever it stands', async () => {
    await add({ endpointId: 'a' });
    await add({ endpointId: 'a' });
    await add({ endpointId: 'b' });
    await add({ endpointId: 'a' });
    expect(await slots.othersQueued('a', 50)).toBe(true);
    expect(await slots.othersQueued('b', 50)).toBe(true);
  });

  it('should look only at the next `lookahead` jobs the queue hands out (the oldest)', async () => {
    for (let i = 0; i < 3; i++) await add({ endpointId: 'a' });
    await add({ endpointId: 'b' }); // fourth in line
    expect(await slots.othersQueued('a', 3)).toBe(false);
    expect(await slots.othersQueued('a', 4)).toBe(true);
  });

  it('should count a job that names no endpoint (queued by an earlier version) as another’s', async () => {
    await add({ endpointId: 'a' });
    await add({});
    expect(await slots.othersQueued('a', 50)).toBe(true);
  });

  it('should skip ids whose job hash is gone (removed while queued)', async () => {
    await add({ endpointId: 'a' });
    const gone = await add({ endpointId: 'b' });
    await redis.del(`${prefix}:${DELIVERY_QUEUE}:${String(gone.id)}`);
    expect(await slots.othersQueued('a', 50)).toBe(false);
  });
});
