import type { ServerResponse } from 'http';
import { Webhook } from 'standardwebhooks';
import { deliveryApi } from './support/delivery-api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';
import {
  killWorker,
  startWorkerProcess,
  WorkerProcess,
  workerProcesses,
} from './support/worker-process';

/** The worker's request timeout; its lease on a delivery is this plus 10 s. */
const TIMEOUT_MS = 2_000;
const LEASE_MARGIN_MS = 2_000;
const LEASE_MS = TIMEOUT_MS + LEASE_MARGIN_MS;

/** A worker-only process (src/main.ts) with this spec's timeouts. */
const startWorker = () =>
  startWorkerProcess({
    WEBHOOK_TIMEOUT_MS: String(TIMEOUT_MS),
    DELIVERY_LEASE_MARGIN_MS: String(LEASE_MARGIN_MS),
  });

describe('when a worker is killed while a delivery is in flight', () => {
  let svc: E2eApp;
  let receiver: Receiver;
  let held: ServerResponse | undefined;
  let heldClosed = false;
  let first: WorkerProcess;

  beforeAll(async () => {
    svc = await startE2eApp({ role: 'api' });
    first = await startWorker();
    receiver = await startReceiver((n, _r, res) => {
      if (n > 0) return void res.end('ok');
      // Hold the first request open until its sender goes away.
      held = res;
      res.on('close', () => (heldClosed = true));
    });
  });

  afterAll(async () => {
    await Promise.all(workerProcesses().map(killWorker));
    await receiver?.close();
    await svc?.close();
  });

  it('should redeliver the same message after the lease and record the attempt as interrupted', async () => {
    const client = deliveryApi(svc, await svc.createAccount());
    const endpoint = await client.createEndpoint(receiver.url);
    const event = await client.publish('trip.delayed', { minutes: 40 });

    await eventually(() => held, 'the first request');
    const sending = await client.deliveryWhen(
      event.id,
      (d) => d.attempts.length === 1,
      'the first attempt to be claimed',
    );
    expect(sending).toMatchObject({ status: 'sending', attemptCount: 1 });
    expect(sending.attempts[0]).toMatchObject({ status: 'in_progress' });

    await killWorker(first);
    const killedAt = Date.now();
    await eventually(() => heldClosed, 'the killed worker to drop the request');
    await startWorker();

    const delivery = await client.deliveryWhen(
      event.id,
      (d) => d.status === 'succeeded',
      'the redelivery to succeed',
      LEASE_MS + 15_000,
    );
    expect(receiver.received).toHaveLength(2);
    const webhook = new Webhook(endpoint.secret);
    for (const got of receiver.received) {
      expect(got.headers['webhook-id']).toBe(event.id);
      expect(webhook.verify(got.body, got.headers as any)).toMatchObject({
        type: 'trip.delayed',
        data: { minutes: 40 },
      });
    }
    // The dead worker's lease, taken before the kill, had to run out first.
    const [firstAt, secondAt] = receiver.received.map((got) => got.at);
    expect(secondAt - firstAt).toBeGreaterThanOrEqual(LEASE_MS - 500);
    expect(secondAt).toBeGreaterThan(killedAt);
    expect(
      Number(receiver.received[1].headers['webhook-timestamp']),
    ).toBeGreaterThan(
      Number(receiver.received[0].headers['webhook-timestamp']),
    );

    expect(delivery).toMatchObject({
      status: 'succeeded',
      attemptCount: 2,
      lastStatusCode: 200,
    });
    expect(delivery.attempts).toHaveLength(2);
    expect(delivery.attempts[0]).toMatchObject({
      number: 1,
      trigger: 'scheduled',
      status: 'interrupted',
      errorClass: 'interrupted',
      statusCode: null,
    });
    expect(delivery.attempts[0].finishedAt).not.toBeNull();
    expect(delivery.attempts[1]).toMatchObject({
      number: 2,
      trigger: 'scheduled',
      status: 'succeeded',
      statusCode: 200,
    });
  });
});
