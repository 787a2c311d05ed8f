/**
 * Adversarial (worker): an endpoint limited to one request at a time, with deliveries parked
 * behind the one being sent. While the slot sends delivery B, it claims the next one (C) ahead
 * of time. Whatever the API is told about the endpoint while B is in flight (it answers 410,
 * it is deleted, its URL changes, its secret rotates) must hold for C, which is sent only
 * after B's outcome is recorded and after the API call has answered.
 */
import type { IncomingHttpHeaders, ServerResponse } from 'http';
import { createServer, Server } from 'http';
import type { AddressInfo } from 'net';
import request from 'supertest';
import { Webhook } from 'standardwebhooks';
import { deliveryApi, holdsFor } from './support/delivery-api';
import {
  E2E_BULL_PREFIX,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import { startReceiver } from './support/receiver';

jest.setTimeout(60_000);

interface Held {
  headers: IncomingHttpHeaders;
  body: string;
  res: ServerResponse;
}

/** A receiver that holds every request until the test answers it. */
async function startHoldingReceiver() {
  const held: Held[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () =>
      held.push({
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
        res,
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    held,
    ids: () => held.map((h) => String(h.headers['webhook-id'])),
    answer(n: number, status: number) {
      held[n].res.statusCode = status;
      held[n].res.end(String(status));
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const h of held) if (!h.res.writableEnded) h.res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
type HoldingReceiver = Awaited<ReturnType<typeof startHoldingReceiver>>;

describe('adversarial2 worker: a delivery claimed ahead while its endpoint changes', () => {
  let svc: E2eApp;
  let client: ReturnType<typeof deliveryApi>;
  const receivers: HoldingReceiver[] = [];

  beforeAll(async () => {
    svc = await startE2eApp({
      perEndpointConcurrency: 1,
      workerConcurrency: 4,
      deliveryTimeoutMs: 8_000,
    });
    client = deliveryApi(svc, await svc.createAccount('adv2-ahead'));
  });

  afterAll(async () => {
    for (const r of receivers) await r.close();
    await svc?.close();
  });

  async function receiver() {
    const r = await startHoldingReceiver();
    receivers.push(r);
    return r;
  }

  /**
   * Endpoint (limit 1) to `hook`; A is sent and held, B and C wait parked; A is answered 200,
   * B is sent and held, and C is claimed (status `sending`) while B is in flight.
   */
  async function bInFlightCClaimed(hook: HoldingReceiver, type: string) {
    const endpoint = await client.createEndpoint(hook.url, [type]);
    const a = await client.publish(type, { n: 'a' });
    await eventually(() => hook.held.length === 1, 'A to be sent');
    const b = await client.publish(type, { n: 'b' });
    const c = await client.publish(type, { n: 'c' });
    const parkedKey = `${E2E_BULL_PREFIX}:endpoint-parked:${endpoint.id}`;
    await eventually(
      async () => (await svc.queue.client.zcard(parkedKey)) === 2,
      'B and C to wait for the slot',
    );
    hook.answer(0, 200);
    await eventually(() => hook.held.length === 2, 'B to be sent');
    expect(hook.ids()).toEqual([a.id, b.id]);
    await client.deliveryWhen(
      c.id,
      (d) => d.status === 'sending',
      'C to be claimed while B is in flight',
    );
    return { endpoint, a, b, c };
  }

  it('should send nothing more to an endpoint once it answered 410 Gone (C claimed before the 410)', async () => {
    const hook = await receiver();
    const { endpoint, b, c } = await bInFlightCClaimed(hook, 'adv2.gone');
    hook.answer(1, 410);
    await client.deliveryWhen(
      b.id,
      (d) => d.status === 'failed' && d.lastStatusCode === 410,
      'B recorded as 410',
    );
    const ep = await client
      .api()
      .get(`/v1/endpoints/${endpoint.id}`)
      .set(client.auth)
      .expect(200);
    expect(ep.body.disabled).toBe(true);
    // The endpoint is disabled: C must fail without a request, as any later delivery does.
    await holdsFor(
      () => hook.held.length === 2,
      2_000,
      'no request to the endpoint after its 410 was recorded',
    );
    const delivery = await client.deliveryWhen(
      c.id,
      (d) => d.status === 'failed',
      'C to fail',
    );
    expect(delivery.attempts.map((a) => a.errorClass)).toEqual([
      'endpoint_disabled',
    ]);
  });

  it('should send nothing to an endpoint after DELETE answered 204', async () => {
    const hook = await receiver();
    const { endpoint } = await bInFlightCClaimed(hook, 'adv2.deleted');
    await client
      .api()
      .delete(`/v1/endpoints/${endpoint.id}`)
      .set(client.auth)
      .expect(204);
    hook.answer(1, 200);
    await holdsFor(
      () => hook.held.length === 2,
      2_000,
      'no request to the endpoint after it was deleted',
    );
  });

  it('should send to the new URL once PATCH answered with it', async () => {
    const oldHook = await receiver();
    const newHook = await receiver();
    const { endpoint, c } = await bInFlightCClaimed(oldHook, 'adv2.moved');
    const patched = await client
      .api()
      .patch(`/v1/endpoints/${endpoint.id}`)
      .set(client.auth)
      .send({ url: newHook.url })
      .expect(200);
    expect(patched.body.url).toBe(newHook.url);
    oldHook.answer(1, 200);
    await eventually(
      () => oldHook.held.length + newHook.held.length === 3,
      'C to be sent',
    );
    newHook.held.forEach((_h, n) => newHook.answer(n, 200));
    expect(oldHook.held.length).toBe(2);
    expect(newHook.ids()).toEqual([c.id]);
  });

  it('should sign a request sent after rotate-secret answered with the new current secret', async () => {
    const hook = await receiver();
    const { endpoint, c } = await bInFlightCClaimed(hook, 'adv2.rotated');
    const rotated = await client
      .api()
      .post(`/v1/endpoints/${endpoint.id}/rotate-secret`)
      .set(client.auth)
      .expect(201);
    const newSecret: string = rotated.body.secret;
    hook.answer(1, 200);
    await eventually(() => hook.held.length === 3, 'C to be sent');
    hook.answer(2, 200);
    const got = hook.held[2];
    expect(got.headers['webhook-id']).toBe(c.id);
    // One signature per active secret: the old one (24 h more) and the new current one.
    const signatures = String(got.headers['webhook-signature']).split(' ');
    expect(signatures).toHaveLength(2);
    expect(() =>
      new Webhook(newSecret).verify(
        got.body,
        got.headers as Record<string, string>,
      ),
    ).not.toThrow();
  });

  it('should keep the API and the receiver in agreement: C verified and recorded once', async () => {
    const hook = await receiver();
    const { endpoint, c } = await bInFlightCClaimed(hook, 'adv2.plain');
    hook.answer(1, 200);
    await eventually(() => hook.held.length === 3, 'C to be sent');
    hook.answer(2, 200);
    const secret = (
      await request(svc.url)
        .get(`/v1/endpoints/${endpoint.id}/secret`)
        .set(client.auth)
        .expect(200)
    ).body.secret as string;
    const got = hook.held[2];
    expect(got.headers['webhook-id']).toBe(c.id);
    expect(() =>
      new Webhook(secret).verify(
        got.body,
        got.headers as Record<string, string>,
      ),
    ).not.toThrow();
    const delivery = await client.deliveryWhen(
      c.id,
      (d) => d.status === 'succeeded',
      'C to succeed',
    );
    expect(delivery.attemptCount).toBe(1);
    expect(delivery.attempts).toHaveLength(1);
    expect(delivery.attempts[0]).toMatchObject({
      number: 1,
      status: 'succeeded',
      statusCode: 200,
    });
  });

  describe('between a failed attempt and its retry (pinned)', () => {
    /** Answers 503 with Retry-After: 2 the first time, 200 after that. */
    const retryLater = () =>
      startReceiver((n, _got, res) => {
        res.statusCode = n === 0 ? 503 : 200;
        if (n === 0) res.setHeader('retry-after', '2');
        res.end('x');
      });

    it('should send the retry to the URL the endpoint was given meanwhile', async () => {
      const before = await retryLater();
      const after = await startReceiver();
      try {
        const endpoint = await client.createEndpoint(before.url, [
          'adv2.retrymoved',
        ]);
        const event = await client.publish('adv2.retrymoved', { n: 1 });
        await client.deliveryWhen(
          event.id,
          (d) => d.status === 'pending' && d.attempts.length === 1,
          'the first attempt to fail',
        );
        await client
          .api()
          .patch(`/v1/endpoints/${endpoint.id}`)
          .set(client.auth)
          .send({ url: after.url })
          .expect(200);
        const done = await client.deliveryWhen(
          event.id,
          (d) => d.status === 'succeeded',
          'the retry to succeed',
        );
        expect(before.received).toHaveLength(1);
        expect(after.received).toHaveLength(1);
        expect(done.attempts).toHaveLength(2);
        expect(
          new Webhook(endpoint.secret).verify(
            after.received[0].body,
            after.received[0].headers as Record<string, string>,
          ),
        ).toBeTruthy();
      } finally {
        await before.close();
        await after.close();
      }
    });

    it('should sign the retry with the old and the new secret after a rotation', async () => {
      const hook = await retryLater();
      try {
        const endpoint = await client.createEndpoint(hook.url, [
          'adv2.retryrotated',
        ]);
        const event = await client.publish('adv2.retryrotated', { n: 1 });
        await client.deliveryWhen(
          event.id,
          (d) => d.status === 'pending' && d.attempts.length === 1,
          'the first attempt to fail',
        );
        const rotated = await client
          .api()
          .post(`/v1/endpoints/${endpoint.id}/rotate-secret`)
          .set(client.auth)
          .expect(201);
        await client.deliveryWhen(
          event.id,
          (d) => d.status === 'succeeded',
          'the retry to succeed',
        );
        const [firstTry, retried] = hook.received;
        expect(retried.headers['webhook-id']).toBe(
          firstTry.headers['webhook-id'],
        );
        expect(
          String(retried.headers['webhook-signature']).split(' '),
        ).toHaveLength(2);
        for (const secret of [endpoint.secret, rotated.body.secret]) {
          expect(
            new Webhook(secret).verify(
              retried.body,
              retried.headers as Record<string, string>,
            ),
          ).toBeTruthy();
        }
        expect(() =>
          new Webhook(rotated.body.secret).verify(
            firstTry.body,
            firstTry.headers as Record<string, string>,
          ),
        ).toThrow();
      } finally {
        await hook.close();
      }
    });
  });
});
