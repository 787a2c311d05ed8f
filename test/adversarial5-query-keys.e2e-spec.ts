/**
 * Adversarial (round 5): README, "Requests": "Unknown query keys are a 400, including those named
 * like Object.prototype members (?__proto__=1, ?constructor=1, ?toString=1, ...), which are never
 * silently ignored." That holds on the list routes (their query DTOs forbid unknown keys), but a
 * route that takes no query at all never looks at it: the key is ignored and the request runs.
 * A careless caller's `?dryRun=true` on DELETE or rotate-secret deletes the endpoint or rotates
 * its secret for real.
 *
 * Every /v1 route without query parameters must answer 400 naming the key, and change nothing.
 */
import request from 'supertest';
import {
  Tenant,
  createTenant,
  fingerprint,
  messageOf,
  tripBody,
} from './support/api';
import {
  ADMIN_TOKEN,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

describe('adversarial5: unknown query keys on routes that take no query', () => {
  let svc: E2eApp;
  let t: Tenant;
  let receiver: Receiver;
  let endpointId: string;
  let tripId: string;
  let eventId: string;
  let deliveryId: string;
  const accountName = `adv5-query-${process.pid}`;

  beforeAll(async () => {
    svc = await startE2eApp();
    t = await createTenant(svc, 'adv5-query-keys');
    receiver = await startReceiver();
    endpointId = (
      await request(svc.url)
        .post('/v1/endpoints')
        .set(t.auth)
        .send({ url: receiver.url })
        .expect(201)
    ).body.id;
    tripId = (
      await request(svc.url)
        .post('/v1/trips')
        .set(t.auth)
        .send(tripBody())
        .expect(201)
    ).body.id;
    eventId = (
      await request(svc.url)
        .post('/v1/events')
        .set(t.auth)
        .send({ type: 'adv5.query', payload: {} })
        .expect(201)
    ).body.id;
    // Every delivery settled: nothing changes the rows below but the requests of the tests.
    await eventually(async () => {
      const rows: { id: string; status: string; event_id: string }[] =
        await svc.dataSource.query(
          'SELECT id, status, event_id FROM deliveries WHERE account_id = $1',
          [t.id],
        );
      const done =
        rows.length === 2 && rows.every((r) => r.status === 'succeeded');
      if (done) deliveryId = rows.find((r) => r.event_id === eventId)!.id;
      return done;
    }, 'the setup deliveries to succeed');
  });

  afterAll(async () => {
    await receiver?.close();
    await svc?.close();
  });

  it('should answer 400 to ?dryRun=true on every route without a query, and change nothing', async () => {
    const before = await fingerprint(svc.dataSource, [t.id], [accountName]);
    const received = receiver.received.length;
    const q = '?dryRun=true';
    const routes: [string, () => request.Test][] = [
      [
        'GET /v1/endpoints/:id',
        () =>
          request(svc.url).get(`/v1/endpoints/${endpointId}${q}`).set(t.auth),
      ],
      [
        'GET /v1/endpoints/:id/secret',
        () =>
          request(svc.url)
            .get(`/v1/endpoints/${endpointId}/secret${q}`)
            .set(t.auth),
      ],
      [
        'GET /v1/trips/:id',
        () => request(svc.url).get(`/v1/trips/${tripId}${q}`).set(t.auth),
      ],
      [
        'GET /v1/events/:id',
        () => request(svc.url).get(`/v1/events/${eventId}${q}`).set(t.auth),
      ],
      [
        'GET /v1/deliveries/:id',
        () =>
          request(svc.url).get(`/v1/deliveries/${deliveryId}${q}`).set(t.auth),
      ],
      [
        'POST /v1/accounts',
        () =>
          request(svc.url)
            .post(`/v1/accounts${q}`)
            .set('authorization', `Bearer ${ADMIN_TOKEN}`)
            .send({ name: accountName }),
      ],
      [
        'POST /v1/endpoints',
        () =>
          request(svc.url)
            .post(`/v1/endpoints${q}`)
            .set(t.auth)
            .send({ url: receiver.url }),
      ],
      [
        'POST /v1/events',
        () =>
          request(svc.url)
            .post(`/v1/events${q}`)
            .set(t.auth)
            .send({ type: 'adv5.query', payload: {} }),
      ],
      [
        'POST /v1/trips',
        () =>
          request(svc.url).post(`/v1/trips${q}`).set(t.auth).send(tripBody()),
      ],
      [
        'POST /v1/trips/:id/delays',
        () =>
          request(svc.url)
            .post(`/v1/trips/${tripId}/delays${q}`)
            .set(t.auth)
            .send({ minutes: 5, reason: 'dry run' }),
      ],
      [
        'POST /v1/endpoints/:id/rotate-secret',
        () =>
          request(svc.url)
            .post(`/v1/endpoints/${endpointId}/rotate-secret${q}`)
            .set(t.auth),
      ],
      [
        'POST /v1/endpoints/:id/enable',
        () =>
          request(svc.url)
            .post(`/v1/endpoints/${endpointId}/enable${q}`)
            .set(t.auth),
      ],
      [
        'POST /v1/deliveries/:id/retry',
        () =>
          request(svc.url)
            .post(`/v1/deliveries/${deliveryId}/retry${q}`)
            .set(t.auth),
      ],
      [
        'PATCH /v1/endpoints/:id',
        () =>
          request(svc.url)
            .patch(`/v1/endpoints/${endpointId}${q}`)
            .set(t.auth)
            .send({ description: 'dry run' }),
      ],
      [
        'POST /v1/trips/:id/arrival',
        () =>
          request(svc.url).post(`/v1/trips/${tripId}/arrival${q}`).set(t.auth),
      ],
      [
        'DELETE /v1/endpoints/:id',
        () =>
          request(svc.url)
            .delete(`/v1/endpoints/${endpointId}${q}`)
            .set(t.auth),
      ],
    ];
    const answers: string[] = [];
    for (const [name, send] of routes) {
      const res = await send();
      answers.push(
        `${name}: ${res.status}${res.status === 400 && /dryRun/.test(messageOf(res)) ? ' naming dryRun' : ''}`,
      );
    }
    expect(answers).toEqual(
      routes.map(([name]) => `${name}: 400 naming dryRun`),
    );
    // NOTE: a manual retry that ran would have sent one more request; give it the time.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(receiver.received.length).toBe(received);
    expect(await fingerprint(svc.dataSource, [t.id], [accountName])).toEqual(
      before,
    );
  });

  it.each(['__proto__', 'constructor', 'toString'])(
    'should answer 400 to POST /v1/endpoints/:id/rotate-secret?%s=1 and keep the secret',
    async (key) => {
      // NOTE: an endpoint of its own (the test above deletes the shared one if it fails).
      const id = (
        await request(svc.url)
          .post('/v1/endpoints')
          .set(t.auth)
          .send({ url: receiver.url })
          .expect(201)
      ).body.id;
      const secret = async () =>
        (await request(svc.url).get(`/v1/endpoints/${id}/secret`).set(t.auth))
          .body.secret;
      const before = await secret();
      const res = await request(svc.url)
        .post(`/v1/endpoints/${id}/rotate-secret?${key}=1`)
        .set(t.auth);
      expect({
        status: res.status,
        names: messageOf(res).includes(key),
      }).toEqual({ status: 400, names: true });
      expect(await secret()).toBe(before);
    },
  );
});
