import { deliveryApi } from './support/delivery-api';
import { E2E_BULL_PREFIX, E2eApp, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

describe('when two deployments share a Redis but not a Bull prefix', () => {
  let svc: E2eApp;
  let other: E2eApp;
  let receiver: Receiver;
  let stolen = 0;

  beforeAll(async () => {
    svc = await startE2eApp();
    // Another deployment's worker (a docker compose stack, a parallel test run) on the
    // same Redis: it must never take this deployment's jobs. (It shares the test database,
    // so its reconciler and relay, which read Postgres, are off: it sees only Bull jobs.)
    other = await startE2eApp({
      role: 'worker',
      bullPrefix: `${E2E_BULL_PREFIX}-other`,
      reconcileIntervalMs: 600_000,
      outboxRelay: false,
    });
    other.queue.on('active', () => stolen++);
    receiver = await startReceiver();
  });

  afterAll(async () => {
    await receiver?.close();
    await other?.close();
    await svc?.close();
  });

  it('should keep its jobs to itself', async () => {
    expect(svc.queue.toKey('x')).toBe(
      `${E2E_BULL_PREFIX}:webhook-deliveries:x`,
    );
    const client = deliveryApi(svc, await svc.createAccount());
    await client.createEndpoint(receiver.url);
    const events = await Promise.all(
      Array.from({ length: 10 }, (_, n) =>
        client.publish('trip.delayed', { n }),
      ),
    );
    for (const event of events) {
      await client.deliveryWhen(
        event.id,
        (d) => d.status === 'succeeded',
        'the delivery to succeed',
      );
    }
    expect(receiver.received).toHaveLength(10);
    expect(stolen).toBe(0);
  });
});
