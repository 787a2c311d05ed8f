/**
 * Adversarial (worker): a manual retry (`POST /v1/deliveries/:id/retry`) of a delivery that
 * is `pending`, waiting for its next scheduled attempt. A manual attempt is one extra attempt
 * and is never retried; it must not take the delivery's scheduled attempts away. Whatever it
 * gets (a 410, or an endpoint disabled meanwhile), the delivery must not be left `pending`
 * with no next attempt: nothing would ever send it again, nor fail it.
 */
import type { ServerResponse } from 'http';
import { DeliveryLog, deliveryApi, holdsFor } from './support/delivery-api';
import { E2eApp, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

jest.setTimeout(60_000);

/** Second scheduled attempt 5 s (±20 %) after the first: room for the manual one in between. */
const STEP_MS = 5_000;

describe('adversarial2 worker: a manual retry of a pending delivery', () => {
  let svc: E2eApp;
  let client: ReturnType<typeof deliveryApi>;
  const receivers: Receiver[] = [];

  beforeAll(async () => {
    svc = await startE2eApp({
      retryScheduleMs: [0, STEP_MS, STEP_MS, STEP_MS],
    });
    client = deliveryApi(svc, await svc.createAccount('adv2-manual'));
  });

  afterAll(async () => {
    for (const r of receivers) await r.close();
    await svc?.close();
  });

  async function receiver(
    answer: (n: number, body: string, res: ServerResponse) => void,
  ) {
    const r = await startReceiver((n, got, res) => answer(n, got.body, res));
    receivers.push(r);
    return r;
  }

  const reply = (res: ServerResponse, status: number) => {
    res.statusCode = status;
    res.end(String(status));
  };

  /** Waits until the delivery is `pending` again after `attempts` recorded attempts. */
  const pendingAfter = (eventId: string, attempts: number) =>
    client.deliveryWhen(
      eventId,
      (d) =>
        d.status === 'pending' &&
        d.attempts.length === attempts &&
        d.attempts.every((a) => a.status !== 'in_progress'),
      `the delivery pending after ${attempts} attempt(s)`,
    );

  const retry = (deliveryId: string) =>
    client
      .api()
      .post(`/v1/deliveries/${deliveryId}/retry`)
      .set(client.auth)
      .expect(202);

  /** A `pending` delivery always has a next attempt, and ends `failed` on a disabled endpoint. */
  async function expectNotStranded(eventId: string): Promise<DeliveryLog> {
    const [now] = await client.log(eventId);
    const final = await client
      .deliveryWhen(
        eventId,
        (d) => d.status === 'failed',
        'the delivery of the disabled endpoint to end failed',
        2 * STEP_MS,
      )
      .catch(async (error: Error) => {
        const [stuck] = await client.log(eventId);
        throw new Error(
          `${error.message}; right after the manual attempt: status ${now.status}, ` +
            `nextAttemptAt ${now.nextAttemptAt}; ${2 * STEP_MS} ms later: status ` +
            `${stuck.status}, nextAttemptAt ${stuck.nextAttemptAt}, ${stuck.attempts.length} attempts`,
        );
      });
    return final;
  }

  it('should not strand the delivery when the manual attempt is answered 410', async () => {
    const hook = await receiver((n, _body, res) =>
      reply(res, n === 0 ? 500 : 410),
    );
    await client.createEndpoint(hook.url, ['adv2.manual410']);
    const event = await client.publish('adv2.manual410', { n: 1 });
    const first = await pendingAfter(event.id, 1);
    expect(first.nextAttemptAt).not.toBe(null);
    await retry(first.id);
    const afterManual = await client.deliveryWhen(
      event.id,
      (d) => d.attempts.length === 2 && d.attempts[1].status === 'failed',
      'the manual attempt to be recorded',
    );
    expect(afterManual.attempts[1]).toMatchObject({
      number: 2,
      trigger: 'manual',
      statusCode: 410,
    });
    const final = await expectNotStranded(event.id);
    expect(final.nextAttemptAt).toBe(null);
    expect(hook.received).toHaveLength(2);
  });

  it('should not strand the delivery when the manual attempt finds the endpoint disabled', async () => {
    // Event "stay" fails once (a retry is scheduled); event "gone" is answered 410, which
    // disables the endpoint; then "stay" is retried by hand.
    const hook = await receiver((_n, body, res) =>
      reply(res, body.includes('"gone"') ? 410 : 500),
    );
    const endpoint = await client.createEndpoint(hook.url, [
      'adv2.manualdisabled',
    ]);
    const stay = await client.publish('adv2.manualdisabled', { n: 'stay' });
    const first = await pendingAfter(stay.id, 1);
    const gone = await client.publish('adv2.manualdisabled', { n: 'gone' });
    await client.deliveryWhen(
      gone.id,
      (d) => d.status === 'failed',
      'the 410 to be recorded',
    );
    const ep = await client
      .api()
      .get(`/v1/endpoints/${endpoint.id}`)
      .set(client.auth)
      .expect(200);
    expect(ep.body.disabled).toBe(true);
    await retry(first.id);
    const afterManual = await client.deliveryWhen(
      stay.id,
      (d) => d.attempts.length === 2 && d.attempts[1].status === 'failed',
      'the manual attempt to be recorded',
    );
    expect(afterManual.attempts[1]).toMatchObject({
      trigger: 'manual',
      errorClass: 'endpoint_disabled',
    });
    await expectNotStranded(stay.id);
    expect(hook.received).toHaveLength(2);
  });

  it('should keep the scheduled attempt when the manual attempt fails with a 500 (pinned)', async () => {
    const hook = await receiver((n, _body, res) =>
      reply(res, n < 2 ? 500 : 200),
    );
    await client.createEndpoint(hook.url, ['adv2.manual500']);
    const event = await client.publish('adv2.manual500', { n: 1 });
    const first = await pendingAfter(event.id, 1);
    await retry(first.id);
    const afterManual = await pendingAfter(event.id, 2);
    expect(afterManual.nextAttemptAt).toBe(first.nextAttemptAt);
    expect(afterManual.attempts[1]).toMatchObject({
      number: 2,
      trigger: 'manual',
      statusCode: 500,
    });
    const done = await client.deliveryWhen(
      event.id,
      (d) => d.status === 'succeeded',
      'the scheduled attempt to succeed',
      2 * STEP_MS,
    );
    expect(done.attempts.map((a) => [a.number, a.trigger, a.status])).toEqual([
      [1, 'scheduled', 'failed'],
      [2, 'manual', 'failed'],
      [3, 'scheduled', 'succeeded'],
    ]);
    await holdsFor(
      () => hook.received.length === 3,
      500,
      'nothing sent after the success',
    );
  });
});
