import { deliveryApi } from './support/delivery-api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

/**
 * Tenant A owns WORKER_CONCURRENCY / PER_ENDPOINT endpoints, each with a backlog, on a slow
 * receiver: its slots take every worker. Tenant B then publishes one event to a fast receiver.
 * A slot holder serves its endpoint's parked jobs one after the other (at most TURN_JOBS = 16 in
 * delivery-worker.ts); without a turn that ends when other endpoints' jobs wait, B waited for 16
 * slow answers per worker, not for one or two. With a receiver that hangs to the timeout (15 s
 * by default) that is 4 minutes during which no other tenant gets anything.
 * A turn ends for other endpoints' jobs once it has lasted TURN_MS (1 s): B publishes after A's
 * slots have held the workers for longer than that.
 */
const WORKERS = 4;
const PER_ENDPOINT = 2;
const A_ENDPOINTS = WORKERS / PER_ENDPOINT;
/** Events A publishes: each goes to every one of A's endpoints. */
const A_EVENTS = 40;
/** How long A's receiver holds each request. */
const HOLD_MS = 200;
/** More than TURN_MS in delivery-worker.ts. */
const TURN_OVER_MS = 1_500;

describe('adversarial6: a tenant whose slow endpoints hold every worker slot', () => {
  let svc: E2eApp;
  let slow: Receiver;
  let fast: Receiver;
  let openGate: () => void;
  const gate = new Promise<void>((resolve) => (openGate = resolve));
  const timers: NodeJS.Timeout[] = [];
  let slowBeforeFast: number | undefined;

  beforeAll(async () => {
    svc = await startE2eApp({
      workerConcurrency: WORKERS,
      perEndpointConcurrency: PER_ENDPOINT,
      deliveryTimeoutMs: 10_000,
    });
    slow = await startReceiver((_n, _r, res) => {
      void gate.then(() =>
        timers.push(setTimeout(() => res.end('ok'), HOLD_MS)),
      );
    });
    fast = await startReceiver((_n, _r, res) => {
      slowBeforeFast ??= slow.received.length;
      res.end('ok');
    });
  });

  afterAll(async () => {
    openGate();
    await svc?.close();
    timers.forEach(clearTimeout);
    await slow?.close();
    await fast?.close();
  });

  it('should reach tenant B after a few of A’s slow answers, not after 16 per worker', async () => {
    const a = deliveryApi(svc, await svc.createAccount('a'));
    for (let i = 0; i < A_ENDPOINTS; i++)
      await a.createEndpoint(`${slow.url}?endpoint=${i}`, ['a.flood']);
    for (let i = 0; i < A_EVENTS; i++) await a.publish('a.flood', { i });
    // Every worker slot now waits on one of A's endpoints.
    await eventually(
      () => slow.received.length === WORKERS,
      `A's receiver to hold ${WORKERS} requests`,
    );
    const b = deliveryApi(svc, await svc.createAccount('b'));
    await b.createEndpoint(fast.url, ['b.one']);
    await new Promise((resolve) => setTimeout(resolve, TURN_OVER_MS));
    const event = await b.publish('b.one', { b: true });
    openGate();
    await b.deliveryWhen(
      event.id,
      (d) => d.status === 'succeeded',
      'B’s delivery to succeed',
      45_000,
    );
    expect(fast.received).toHaveLength(1);
    // Fair: each worker finishes the send it is in (and the one it claimed ahead), then takes
    // B's queued job. 16 per worker was 64 of A's requests first.
    expect(slowBeforeFast).toBeLessThanOrEqual(3 * WORKERS);
  });
});
