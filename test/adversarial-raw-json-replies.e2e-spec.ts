/**
 * Adversarial: RawJson answers written by the HTTP adapter's reply (src/http/raw-json.ts):
 * idempotent replays of every POST route are the first answer byte for byte (status,
 * content-type, text), HEAD answers carry no body, and the queue dashboard's gate holds for
 * every spelling of its path.
 */
import { randomUUID } from 'crypto';
import request from 'supertest';
import {
  Tenant,
  createTenant,
  deliveriesSettled,
  tripBody,
} from './support/api';
import { ADMIN_TOKEN, E2eApp, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

describe('adversarial: RawJson replies', () => {
  let svc: E2eApp;
  let receiver: Receiver;
  let a: Tenant;
  let endpointId: string;
  let eventId: string;

  beforeAll(async () => {
    svc = await startE2eApp();
    receiver = await startReceiver();
    a = await createTenant(svc, 'adv-rawjson');
    endpointId = (
      await request(svc.url)
        .post('/v1/endpoints')
        .set(a.auth)
        .send({ url: receiver.url })
        .expect(201)
    ).body.id;
    eventId = (
      await request(svc.url)
        .post('/v1/events')
        .set(a.auth)
        .send({ type: 'adv.raw', payload: { x: 1 } })
        .expect(201)
    ).body.id;
  });

  afterAll(async () => {
    await svc?.close();
    await receiver?.close();
  });

  const api = () => request(svc.url);

  it('should replay every POST route as its first answer, byte for byte', async () => {
    const trip = (
      await api().post('/v1/trips').set(a.auth).send(tripBody()).expect(201)
    ).body;
    const [delivery] = await deliveriesSettled(svc, a, eventId);
    const since = new Date(Date.now() - 60_000).toISOString();
    const tb = tripBody();
    const routes: [string, () => request.Test][] = [
      [
        'accounts',
        () =>
          api()
            .post('/v1/accounts')
            .set('authorization', `Bearer ${ADMIN_TOKEN}`)
            .send({ name: 'n' }),
      ],
      [
        'endpoints',
        () =>
          api()
            .post('/v1/endpoints')
            .set(a.auth)
            .send({ url: `${receiver.url}?2`, eventTypes: ['none.here'] }),
      ],
      [
        'rotate',
        () =>
          api().post(`/v1/endpoints/${endpointId}/rotate-secret`).set(a.auth),
      ],
      [
        'enable',
        () => api().post(`/v1/endpoints/${endpointId}/enable`).set(a.auth),
      ],
      [
        'recover',
        () =>
          api()
            .post(`/v1/endpoints/${endpointId}/recover`)
            .set(a.auth)
            .send({ since }),
      ],
      ['trips', () => api().post('/v1/trips').set(a.auth).send(tb)],
      [
        'delays',
        () =>
          api()
            .post(`/v1/trips/${trip.id}/delays`)
            .set(a.auth)
            .send({ minutes: 3, reason: 'x' }),
      ],
      ['arrival', () => api().post(`/v1/trips/${trip.id}/arrival`).set(a.auth)],
      [
        'events',
        () =>
          api()
            .post('/v1/events')
            .set(a.auth)
            .set('content-type', 'application/json')
            .send('{"type":"none.here","payload":{ "z" : 1.0e0 }}'),
      ],
      [
        'retry',
        () => api().post(`/v1/deliveries/${delivery.id}/retry`).set(a.auth),
      ],
    ];
    const mismatches: string[] = [];
    for (const [name, make] of routes) {
      const key = `adv-${randomUUID()}`;
      const first = await make().set('idempotency-key', key);
      const second = await make().set('idempotency-key', key);
      if (first.status >= 300)
        mismatches.push(`${name}: first answered ${first.status}`);
      if (second.headers['idempotent-replayed'] !== 'true')
        mismatches.push(
          `${name}: not replayed (${second.status} ${second.text})`,
        );
      for (const [what, x, y] of [
        ['status', first.status, second.status],
        [
          'content-type',
          first.headers['content-type'],
          second.headers['content-type'],
        ],
        ['text', first.text, second.text],
      ] as const) {
        if (x !== y)
          mismatches.push(`${name}: ${what} ${String(x)} then ${String(y)}`);
      }
    }
    expect(mismatches).toEqual([]);
  });

  it('should answer HEAD on RawJson routes with the GET headers and no body', async () => {
    for (const path of [
      `/v1/events/${eventId}`,
      '/v1/events',
      `/v1/events?type=adv.raw`,
    ]) {
      const get = await api().get(path).set(a.auth).expect(200);
      const head = await api().head(path).set(a.auth);
      expect({
        path,
        status: head.status,
        type: head.headers['content-type'],
        length: head.headers['content-length'],
        body: head.text ?? '',
      }).toEqual({
        path,
        status: 200,
        type: 'application/json; charset=utf-8',
        length: String(Buffer.byteLength(get.text)),
        body: '',
      });
    }
  });

  it('should keep the queue dashboard closed for every spelling of its path', async () => {
    const paths = [
      '/admin/queues/api/queues',
      '/ADMIN/QUEUES/api/queues',
      '//admin/queues/api/queues',
      '/admin//queues/api/queues',
      '/admin/%71ueues/api/queues',
      '/admin/queues/../queues/api/queues',
      '/admin/queues;x/api/queues',
      '/admin/queues%2fapi/queues',
      '/admin/queues/api/redis/stats',
    ];
    for (const path of paths) {
      for (const auth of [{}, a.auth]) {
        const res = await api().get(path).set(auth);
        expect({
          path,
          status: res.status,
          leaked: /webhook-deliveries|redis_version/.test(res.text),
        }).toEqual({ path, status: expect.any(Number), leaked: false });
        expect([401, 404]).toContain(res.status);
      }
    }
  });
});
