/**
 * Adversarial (worker): PER_ENDPOINT_CONCURRENCY against an endpoint that never answers, with
 * the timeout longer than the lease margin (as the defaults are: 15 s and 10 s). A slot that
 * serves parked deliveries one after the other claims the next one while it sends the current
 * one; both can last the whole timeout. The endpoint must never get more requests at once
 * than its limit ("the endpoint never gets more than its limit at once").
 */
import type { ServerResponse } from 'http';
import { deliveryApi } from './support/delivery-api';
import {
  E2E_BULL_PREFIX,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

jest.setTimeout(60_000);

const TIMEOUT_MS = 4_000;
/** Below the timeout, as the defaults are (WEBHOOK_TIMEOUT_MS 15 s, margin 10 s). */
const LEASE_MARGIN_MS = 2_000;

describe('adversarial2 worker: an endpoint limited to one request whose requests all time out', () => {
  let svc: E2eApp;
  let hook: Receiver;
  const open = new Set<ServerResponse>();
  let inFlight = 0;
  let maxInFlight = 0;
  /** Request 0 is answered by the test; the others are never answered (they time out). */
  let answerFirst: () => void = () => undefined;

  beforeAll(async () => {
    svc = await startE2eApp({
      perEndpointConcurrency: 1,
      workerConcurrency: 4,
      deliveryTimeoutMs: TIMEOUT_MS,
      deliveryLeaseMarginMs: LEASE_MARGIN_MS,
      retryScheduleMs: [0, 60_000],
    });
    hook = await startReceiver((n, _got, res) => {
      open.add(res);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      res.on('close', () => {
        open.delete(res);
        inFlight--;
      });
      if (n === 0) answerFirst = () => res.end('ok');
    });
  });

  afterAll(async () => {
    for (const res of open) res.destroy();
    await hook?.close();
    await svc?.close();
  });

  it('should never have two requests in flight to it', async () => {
    const client = deliveryApi(svc, await svc.createAccount('adv2-slot'));
    const endpoint = await client.createEndpoint(hook.url, ['adv2.slot']);
    await client.publish('adv2.slot', { n: 'a' });
    await eventually(() => hook.received.length === 1, 'A to be sent');
    await client.publish('adv2.slot', { n: 'b' });
    await client.publish('adv2.slot', { n: 'c' });
    const parkedKey = `${E2E_BULL_PREFIX}:endpoint-parked:${endpoint.id}`;
    await eventually(
      async () => (await svc.queue.client.zcard(parkedKey)) === 2,
      'B and C to wait for the slot',
    );
    answerFirst();
    // B is sent (and times out), C is claimed meanwhile and sent after it (and times out).
    await eventually(
      () => hook.received.length === 3,
      'C to be sent',
      3 * TIMEOUT_MS,
    );
    const cSentAt = hook.received[2].at;
    // Past the slot's lease (timeout + margin from C's claim), while C is still in flight.
    await new Promise((resolve) => setTimeout(resolve, LEASE_MARGIN_MS + 500));
    expect(Date.now() - cSentAt).toBeLessThan(TIMEOUT_MS - 500);
    expect(maxInFlight).toBe(1);
    expect(inFlight).toBe(1);
    await client.publish('adv2.slot', { n: 'd' });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(maxInFlight).toBe(1);
    // D is sent once C has timed out.
    await eventually(
      () => hook.received.length === 4,
      'D to be sent',
      2 * TIMEOUT_MS,
    );
    expect(hook.received[3].at - cSentAt).toBeGreaterThanOrEqual(
      TIMEOUT_MS - 100,
    );
    expect(maxInFlight).toBe(1);
  });
});
