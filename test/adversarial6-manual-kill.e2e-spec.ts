import type { ServerResponse } from 'http';
import { deliveryApi } from './support/delivery-api';
import {
  E2E_BULL_PREFIX,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import { Receiver, startReceiver } from './support/receiver';
import {
  killWorker,
  startWorkerProcess,
  workerProcesses,
} from './support/worker-process';

const TIMEOUT_MS = 2_000;
const LEASE_MARGIN_MS = 2_000;
const LEASE_MS = TIMEOUT_MS + LEASE_MARGIN_MS;
const ATTEMPTS = 4;

/** A worker-only process (src/main.ts) with this spec's timeouts. */
const startWorker = () =>
  startWorkerProcess({
    WEBHOOK_TIMEOUT_MS: String(TIMEOUT_MS),
    DELIVERY_LEASE_MARGIN_MS: String(LEASE_MARGIN_MS),
    PER_ENDPOINT_CONCURRENCY: '1',
  });

/**
 * POST /v1/deliveries/:id/retry of a failed delivery while its endpoint's only slot is busy: the
 * manual job is parked (its Bull job completed), and the slot holder sends it after its own.
 * The worker is SIGKILLed while the receiver holds that manual request. Bull has no job of it
 * left to re-run; once the lease expires the reconciler enqueues a scheduled job, whose claim
 * skips the delivery (not due: a failed delivery has no next attempt). README: "a worker that
 * dies mid-attempt is replaced once its lease expires". The delivery stays `sending` with the
 * attempt `in_progress` forever, under a new worker too.
 */
describe('adversarial6: a worker killed while it sends a parked manual attempt', () => {
  let svc: E2eApp;
  let hook: Receiver;
  let releaseSecond: (() => void) | undefined;
  const heldManual: ServerResponse[] = [];
  let firstEventId = '';
  let secondEventId = '';
  /** Whether the receiver holds the next request of the first event (the manual attempt). */
  let wantManual = false;

  beforeAll(async () => {
    svc = await startE2eApp({ role: 'api' });
    hook = await startReceiver((_n, got, res) => {
      const id = got.headers['webhook-id'];
      if (id === firstEventId) {
        if (wantManual) {
          heldManual.push(res); // the manual attempt: held until the worker is gone
          return;
        }
        res.statusCode = 500;
        return void res.end('no');
      }
      if (id === secondEventId && !releaseSecond)
        return void (releaseSecond = () => res.end('ok'));
      res.end('ok');
    });
  });

  afterAll(async () => {
    await Promise.all(workerProcesses().map(killWorker));
    heldManual.forEach((res) => res.destroy());
    await hook?.close();
    await svc?.close();
  });

  it('should end the manual attempt (interrupted, or sent again) once the lease expired', async () => {
    const first = await startWorker();
    const client = deliveryApi(svc, await svc.createAccount());
    const endpoint = await client.createEndpoint(hook.url);
    firstEventId = (await client.publish('trip.delayed', { n: 1 })).id;
    const failed = await client.deliveryWhen(
      firstEventId,
      (d) => d.status === 'failed',
      'the first delivery to fail',
      20_000,
    );
    expect(failed.attemptCount).toBe(ATTEMPTS);

    // The endpoint's only slot is held by the second event's request.
    secondEventId = (await client.publish('trip.delayed', { n: 2 })).id;
    await eventually(() => releaseSecond, 'the second request to be held');

    wantManual = true;
    await client
      .api()
      .post(`/v1/deliveries/${failed.id}/retry`)
      .set(client.auth)
      .expect(202);
    const parkedKey = `${E2E_BULL_PREFIX}:endpoint-parked:${endpoint.id}`;
    await eventually(
      async () => (await svc.queue.client.zcard(parkedKey)) === 1,
      'the manual job to be parked',
    );
    releaseSecond!();
    await eventually(() => heldManual.length === 1, 'the manual request');
    const sending = (await client.log(firstEventId))[0];
    expect(sending.status).toBe('sending');
    expect(sending.attempts.at(-1)).toMatchObject({
      number: ATTEMPTS + 1,
      trigger: 'manual',
      status: 'in_progress',
    });

    await killWorker(first);
    wantManual = false;
    await startWorker();

    const settled = await client.deliveryWhen(
      firstEventId,
      (d) =>
        d.status !== 'sending' &&
        d.attempts.every((a) => a.status !== 'in_progress'),
      'the delivery to leave `sending` once the dead worker’s lease expired',
      LEASE_MS + 12_000,
    );
    expect(settled.status).toBe('failed');
    expect(
      settled.attempts.find((a) => a.number === ATTEMPTS + 1),
    ).toMatchObject({ trigger: 'manual', status: 'interrupted' });
  });
});
