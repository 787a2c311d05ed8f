/**
 * Adversarial: `POST /v1/deliveries/:id/retry` promises one manual attempt per call
 * (`queued: true`). Two calls must give two attempts, even when they land in the same
 * millisecond (two operators, a double click, a client retrying on a timeout).
 */
import request from 'supertest';
import { Tenant, createTenant, deliveriesSettled } from './support/api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

describe('adversarial: manual retries of one delivery', () => {
  let svc: E2eApp;
  let receiver: Receiver;
  let t: Tenant;

  beforeAll(async () => {
    svc = await startE2eApp();
    receiver = await startReceiver();
    t = await createTenant(svc, 'adv-retry');
    await request(svc.url)
      .post('/v1/endpoints')
      .set(t.auth)
      .send({ url: receiver.url, eventTypes: ['adv.retry'] })
      .expect(201);
  });

  afterAll(async () => {
    jest.restoreAllMocks();
    await svc?.close();
    await receiver?.close();
  });

  const api = () => request(svc.url);

  async function settledDelivery() {
    const ev = await api()
      .post('/v1/events')
      .set(t.auth)
      .send({ type: 'adv.retry', payload: { n: 1 } })
      .expect(201);
    const [delivery] = await deliveriesSettled(svc, t, ev.body.id);
    return { eventId: ev.body.id as string, deliveryId: delivery.id as string };
  }

  const manualAttempts = async (deliveryId: string) => {
    const res = await api()
      .get(`/v1/deliveries/${deliveryId}/attempts`)
      .set(t.auth)
      .expect(200);
    return (res.body.data as any[]).filter(
      (a) => a.trigger === 'manual' && a.finishedAt,
    ).length;
  };

  it('should make two manual attempts for two retry calls answered 202 in the same millisecond', async () => {
    const { eventId, deliveryId } = await settledDelivery();
    const before = receiver.received.filter(
      (r) => r.headers['webhook-id'] === eventId,
    ).length;
    expect(before).toBe(1);
    // Both calls are handled within one millisecond of the server's clock.
    const now = Date.now();
    const spy = jest.spyOn(Date, 'now').mockReturnValue(now);
    let first: request.Response;
    let second: request.Response;
    try {
      first = await api()
        .post(`/v1/deliveries/${deliveryId}/retry`)
        .set(t.auth);
      second = await api()
        .post(`/v1/deliveries/${deliveryId}/retry`)
        .set(t.auth);
    } finally {
      spy.mockRestore();
    }
    expect([first.status, second.status]).toEqual([202, 202]);
    expect(first.body.queued).toBe(true);
    expect(second.body.queued).toBe(true);
    // Two promised attempts: give them time to be made.
    await eventually(
      async () => (await manualAttempts(deliveryId)) >= 1,
      'the first manual attempt',
    );
    await new Promise((r) => setTimeout(r, 1500));
    expect({
      jobIds:
        first.body.jobId === second.body.jobId ? 'same job id' : 'distinct',
      manualAttempts: await manualAttempts(deliveryId),
      webhooksReceived: receiver.received.filter(
        (r) => r.headers['webhook-id'] === eventId,
      ).length,
    }).toEqual({ jobIds: 'distinct', manualAttempts: 2, webhooksReceived: 3 });
  });
});
