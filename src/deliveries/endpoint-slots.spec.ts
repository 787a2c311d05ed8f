import Bull, { Queue } from 'bull';
import Redis from 'ioredis';
import { e2eRedisUrl } from '../../test/support/harness';
import {
  DELIVERY_JOB_OPTIONS,
  DELIVERY_QUEUE,
  DeliveryJob,
  deliveryJobId,
} from './delivery-queue';
import { EndpointSlots, ParkedJob } from './endpoint-slots';

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

/**
 * A parked job handed back to the queue (its holder yielded, or the reconciler kicked it) that
 * finds every slot of its endpoint taken again is parked where it stood, not at the end of its
 * endpoint's line: the jobs that arrived after it do not overtake it.
 */
describe('EndpointSlots: a handed-back job keeps its place in line', () => {
  const prefix = `slots-place${process.env.TEST_DB_SUFFIX ?? ''}-${process.pid}`;
  let redis: Redis;
  let slots: EndpointSlots;
  let endpoint = 0;

  beforeAll(() => {
    redis = new Redis(e2eRedisUrl());
    // NOTE: one slot per endpoint, so that a single holder fills it.
    slots = new EndpointSlots(redis, 1, 10_000, prefix);
  });

  afterAll(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  const job = (endpointId: string, name: string): ParkedJob => ({
    jobId: `${endpointId}-${name}`,
    data: { deliveryId: name, endpointId },
  });

  /**
   * An endpoint whose slot `holder` holds with `h0` while `h1`..`h3` wait parked, then yields:
   * `h1` goes back to the queue. Resolves with the endpoint and the handed-back job.
   */
  async function yieldedWithThreeParked() {
    const endpointId = `e${++endpoint}`;
    expect(
      await slots.acquireOrPark(endpointId, 'holder', job(endpointId, 'h0')),
    ).toEqual({ parked: 0 });
    for (const name of ['h1', 'h2', 'h3'])
      expect(
        await slots.acquireOrPark(endpointId, name, job(endpointId, name)),
      ).toBe(false);
    const released = await slots.releaseOrNext(endpointId, 'holder', 'yield');
    expect(released).toMatchObject({
      kind: 'handoff',
      job: { jobId: `${endpointId}-h1` },
    });
    return {
      endpointId,
      handedBack: (released as { job: ParkedJob }).job,
    };
  }

  /** The parked jobs a holder of the slot serves from now on, in order. */
  async function servedAfter(endpointId: string, holder: string) {
    const served: string[] = [];
    for (;;) {
      const next = await slots.releaseOrNext(endpointId, holder, 'take');
      if (next.kind !== 'next') return served;
      served.push(next.job.data.deliveryId);
    }
  }

  it('should wait at its place when a worker finds the slot taken again (acquireOrPark)', async () => {
    const { endpointId, handedBack } = await yieldedWithThreeParked();
    expect(handedBack.data.parkPlace).toEqual(expect.any(Number));
    // A new arrival takes the slot the holder freed before the handed-back job is picked up.
    expect(
      await slots.acquireOrPark(endpointId, 'late', job(endpointId, 'late')),
    ).toEqual({ parked: 2 });
    expect(await slots.acquireOrPark(endpointId, 'h1', handedBack)).toBe(false);
    expect(await servedAfter(endpointId, 'late')).toEqual(['h1', 'h2', 'h3']);
  });

  it('should wait at its place when it is parked as it is enqueued (parkIfFull)', async () => {
    const { endpointId, handedBack } = await yieldedWithThreeParked();
    expect(
      await slots.acquireOrPark(endpointId, 'late', job(endpointId, 'late')),
    ).toEqual({ parked: 2 });
    const flags = await slots.parkIfFull(
      new Map([[endpointId, [job(endpointId, 'h4'), handedBack]]]),
    );
    expect(flags.get(endpointId)).toEqual([false, false]);
    expect(await servedAfter(endpointId, 'late')).toEqual([
      'h1',
      'h2',
      'h3',
      'h4',
    ]);
  });

  it('should keep its place when the reconciler hands it back (orphans)', async () => {
    const endpointId = `e${++endpoint}`;
    expect(
      await slots.acquireOrPark(endpointId, 'holder', job(endpointId, 'h0')),
    ).toEqual({ parked: 0 });
    for (const name of ['h1', 'h2'])
      await slots.acquireOrPark(endpointId, name, job(endpointId, name));
    // The holder dies: its lease ends, and the reconciler kicks the first parked job.
    await redis.del(`${prefix}:endpoint-inflight:${endpointId}`);
    const kicked = (await slots.orphans()).find(
      (orphan) => orphan.data.endpointId === endpointId,
    )!;
    expect(kicked).toMatchObject({
      jobId: `${endpointId}-h1`,
      data: { parkPlace: expect.any(Number) },
    });
    expect(
      await slots.acquireOrPark(endpointId, 'late', job(endpointId, 'late')),
    ).toEqual({ parked: 1 });
    expect(await slots.acquireOrPark(endpointId, 'h1', kicked)).toBe(false);
    expect(await servedAfter(endpointId, 'late')).toEqual(['h1', 'h2']);
  });

  it('should give a job handed back by an earlier version (no place) a new place at the end', async () => {
    const { endpointId, handedBack } = await yieldedWithThreeParked();
    await slots.acquireOrPark(endpointId, 'late', job(endpointId, 'late'));
    const old = { ...handedBack.data };
    delete old.parkPlace;
    expect(
      await slots.acquireOrPark(endpointId, 'h1', { ...handedBack, data: old }),
    ).toBe(false);
    expect(await servedAfter(endpointId, 'late')).toEqual(['h2', 'h3', 'h1']);
  });
});
