import type { Job } from 'bull';
import type { DeliveryJob } from '../src/deliveries/delivery-queue';
import { DeliveryWorker } from '../src/deliveries/delivery-worker';
import { deliveryApi } from './support/delivery-api';
import {
  E2E_BULL_PREFIX,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

const TIMEOUT_MS = 10_000;
const LEASE_MARGIN_MS = 5_000;

/**
 * The slot of an endpoint whose limit is 1 sends its parked deliveries one after the other;
 * while it sends one, it takes and claims the next, which then waits for its turn.
 */
describe('when a slot sends while deliveries of its endpoint are parked', () => {
  let svc: E2eApp;
  let receiver: Receiver;
  /** Lets go the request the receiver got n-th (0-based); the others are answered at once. */
  const releases: (() => void)[] = [];
  const held = [0, 1].map(
    (n) => new Promise<void>((resolve) => (releases[n] = resolve)),
  );
  let inFlight = 0;
  let maxInFlight = 0;
  let client: ReturnType<typeof deliveryApi>;
  let endpointId: string;
  /** Event ids: a (held), b (held), c, d. */
  const events: Record<'a' | 'b' | 'c' | 'd', string> = {} as never;

  const parkedKey = () => `${E2E_BULL_PREFIX}:endpoint-parked:${endpointId}`;
  const parked = () => svc.queue.client.zcard(parkedKey());
  const delivery = async (eventId: string) => {
    const id = (await client.log(eventId))[0].id;
    const [row]: {
      status: string;
      lease_left_ms: number | null;
      attempts: number;
    }[] = await svc.dataSource.query(
      `SELECT status, (extract(epoch FROM locked_until - now()) * 1000)::int AS lease_left_ms,
              (SELECT count(*)::int FROM delivery_attempts WHERE delivery_id = d.id) AS attempts
         FROM deliveries d WHERE id = $1`,
      [id],
    );
    return { id, ...row };
  };

  beforeAll(async () => {
    svc = await startE2eApp({
      perEndpointConcurrency: 1,
      workerConcurrency: 4,
      deliveryTimeoutMs: TIMEOUT_MS,
      deliveryLeaseMarginMs: LEASE_MARGIN_MS,
    });
    receiver = await startReceiver((n, _req, res) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      res.on('finish', () => inFlight--);
      if (n < held.length) void held[n].then(() => res.end('ok'));
      else res.end('ok');
    });
    client = deliveryApi(svc, await svc.createAccount());
    endpointId = (await client.createEndpoint(receiver.url, ['trip.delayed']))
      .id;
    events.a = (await client.publish('trip.delayed', { n: 'a' })).id;
    await eventually(() => receiver.received.length === 1, 'a to be held');
    events.b = (await client.publish('trip.delayed', { n: 'b' })).id;
    events.c = (await client.publish('trip.delayed', { n: 'c' })).id;
    await eventually(async () => (await parked()) === 2, 'b and c parked');
    releases[0]();
    await eventually(() => receiver.received.length === 2, 'b to be held');
  });

  afterAll(async () => {
    releases.forEach((release) => release());
    await svc?.close();
    await receiver?.close();
  });

  it('should claim the next parked delivery while it sends one, with a lease that outlasts the send in progress and its own', async () => {
    const c = await eventually(async () => {
      const found = await delivery(events.c);
      return found.status === 'sending' && found;
    }, 'c claimed while b is sent');
    expect(c.attempts).toBe(1);
    // The lease of a claim made ahead: the timeout twice, plus the margin.
    expect(c.lease_left_ms).toBeGreaterThan(2 * TIMEOUT_MS);
    expect(c.lease_left_ms).toBeLessThanOrEqual(
      2 * TIMEOUT_MS + LEASE_MARGIN_MS,
    );
    expect((await delivery(events.b)).lease_left_ms).toBeLessThanOrEqual(
      TIMEOUT_MS + LEASE_MARGIN_MS,
    );
    expect(receiver.received).toHaveLength(2);
    expect(inFlight).toBe(1);
  });

  it('should send the delivery it claimed ahead even when the worker stops, and hand the rest back to the queue', async () => {
    const active: string[] = [];
    svc.queue.on('active', (job: Job<DeliveryJob>) =>
      active.push(String(job.id)),
    );
    events.d = (await client.publish('trip.delayed', { n: 'd' })).id;
    await eventually(async () => (await parked()) === 1, 'd parked');
    const stopped = svc.app.get(DeliveryWorker).stop();
    releases[1]();
    await stopped;
    expect(await delivery(events.c)).toMatchObject({
      status: 'succeeded',
      attempts: 1,
    });
    expect(
      receiver.received.slice(0, 3).map((r) => r.headers['webhook-id']),
    ).toEqual([events.a, events.b, events.c]);
    expect(await svc.queue.client.exists(parkedKey())).toBe(0);
    // NOTE: handed back under its own job id. Bull's local pause cuts its blocking connection,
    // and ioredis sends the blocked BRPOPLPUSH again once reconnected: the job may come back
    // to this process's worker (or wait in the queue for another one).
    const d = await delivery(events.d);
    const queued = (await svc.queue.getJobs(['waiting'])).map((job) =>
      String(job.id),
    );
    expect([...queued, ...active]).toContain(`${d.id}:1`);
    expect(
      receiver.received.filter((r) => r.headers['webhook-id'] === events.d)
        .length,
    ).toBeLessThanOrEqual(1);
    expect(maxInFlight).toBe(1);
  });
});
