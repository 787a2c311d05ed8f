import type { ServerResponse } from 'http';
import { deliveryApi } from './support/delivery-api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

/**
 * A careless tenant moves its endpoint: PATCH url from the old server to the new one while a
 * request to the old server is in flight. The old server, being decommissioned, answers that
 * request 410 Gone. The 410 says the OLD URL is gone; the endpoint (now the new URL) is fine.
 * delivery-outcome.service.ts `record` disables the endpoint by id whatever URL answered: the
 * endpoint the tenant just fixed is disabled, and every event after it gets no delivery at all
 * (none is even created for a disabled endpoint) until someone notices and enables it.
 */
describe('adversarial6: a 410 from the URL an endpoint was just moved away from', () => {
  let svc: E2eApp;
  let oldServer: Receiver;
  let newServer: Receiver;
  let held: ServerResponse | undefined;

  beforeAll(async () => {
    svc = await startE2eApp({ deliveryTimeoutMs: 10_000 });
    oldServer = await startReceiver((_n, _r, res) => {
      held = res;
    });
    newServer = await startReceiver();
  });

  afterAll(async () => {
    held?.end();
    await svc?.close();
    await oldServer?.close();
    await newServer?.close();
  });

  it('should keep the endpoint enabled and deliver to its new URL', async () => {
    const client = deliveryApi(svc, await svc.createAccount());
    const endpoint = await client.createEndpoint(oldServer.url);
    const first = await client.publish('trip.delayed', { n: 1 });
    await eventually(() => held, 'the request to the old server');

    const patched = await client
      .api()
      .patch(`/v1/endpoints/${endpoint.id}`)
      .set(client.auth)
      .send({ url: newServer.url })
      .expect(200);
    expect(patched.body.url).toBe(newServer.url);

    // The old server goes away.
    held!.statusCode = 410;
    held!.end('gone');
    await client.deliveryWhen(
      first.id,
      (d) => d.attempts.some((a) => a.statusCode === 410),
      'the 410 to be recorded',
    );

    const got = await client
      .api()
      .get(`/v1/endpoints/${endpoint.id}`)
      .set(client.auth)
      .expect(200);
    expect(got.body).toMatchObject({ url: newServer.url, disabled: false });

    const second = await client.publish('trip.delayed', { n: 2 });
    expect(second.deliveries).toBe(1);
    await eventually(
      () =>
        newServer.received.some((r) => r.headers['webhook-id'] === second.id),
      'the next event at the new URL',
    );
    // The first event is retried like any failed attempt, at the URL current at send time.
    await client.deliveryWhen(
      first.id,
      (d) => d.status === 'succeeded',
      'the first event to reach the new URL',
    );
    expect(oldServer.received).toHaveLength(1);
  });
});
