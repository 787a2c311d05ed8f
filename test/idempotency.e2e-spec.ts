import { RequestMethod } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { ModulesContainer } from '@nestjs/core';
import { randomUUID } from 'crypto';
import request from 'supertest';
import { IDEMPOTENT_METADATA } from '../src/idempotency/idempotent.decorator';
import {
  QueueWatch,
  Tenant,
  createTenant,
  deliveriesSettled,
  messageOf,
  tripBody,
  watchQueue,
} from './support/api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

describe('when a POST carries an Idempotency-Key', () => {
  let svc: E2eApp;
  let receiver: Receiver;
  let watch: QueueWatch;
  let a: Tenant;
  let b: Tenant;

  beforeAll(async () => {
    svc = await startE2eApp();
    receiver = await startReceiver();
    [a, b] = await Promise.all([
      createTenant(svc, 'a'),
      createTenant(svc, 'b'),
    ]);
    await request(svc.url)
      .post('/v1/endpoints')
      .set(a.auth)
      .send({ url: receiver.url, eventTypes: ['trip.delayed'] })
      .expect(201);
    watch = watchQueue(svc.queue);
  });

  afterAll(async () => {
    watch?.stop();
    await svc?.close();
    await receiver?.close();
  });

  const api = () => request(svc.url);
  const newKey = () => `key-${randomUUID()}`;
  const count = async (sql: string, params: unknown[]) =>
    (await svc.dataSource.query(sql, params))[0].count as number;
  const tripsWith = (tenant: Tenant, reference: string) =>
    count(
      'SELECT count(*)::int AS count FROM trips WHERE account_id = $1 AND reference = $2',
      [tenant.id, reference],
    );
  const eventsOfTrip = (tenant: Tenant, tripId: string, type: string) =>
    count(
      `SELECT count(*)::int AS count FROM events
       WHERE account_id = $1 AND type = $2 AND payload->'trip'->>'id' = $3`,
      [tenant.id, type, tripId],
    );
  const createTrip = async (tenant = a) =>
    (
      await api()
        .post('/v1/trips')
        .set(tenant.auth)
        .send(tripBody())
        .expect(201)
    ).body;

  it('should cover every POST route of every controller (@Idempotent)', () => {
    const posts: { route: string; idempotent: boolean }[] = [];
    for (const module of svc.app.get(ModulesContainer).values()) {
      for (const wrapper of module.controllers.values()) {
        const proto = (wrapper.metatype as { prototype?: object })?.prototype;
        if (!proto) continue;
        for (const name of Object.getOwnPropertyNames(proto)) {
          const handler = (proto as Record<string, unknown>)[name];
          if (typeof handler !== 'function') continue;
          if (
            Reflect.getMetadata(METHOD_METADATA, handler) !== RequestMethod.POST
          )
            continue;
          posts.push({
            route: `${wrapper.name}.${name} ${Reflect.getMetadata(PATH_METADATA, handler)}`,
            idempotent:
              Reflect.getMetadata(IDEMPOTENT_METADATA, handler) === true,
          });
        }
      }
    }
    expect(posts.length).toBeGreaterThanOrEqual(10);
    expect(posts.filter((p) => !p.idempotent)).toEqual([]);
  });

  describe('when the same key and body come again', () => {
    it('should replay the created trip and create nothing new', async () => {
      const key = newKey();
      const body = tripBody();
      const first = await api()
        .post('/v1/trips')
        .set(a.auth)
        .set('idempotency-key', key)
        .send(body);
      const second = await api()
        .post('/v1/trips')
        .set(a.auth)
        .set('idempotency-key', key)
        .send(body);
      expect(first.status).toBe(201);
      expect(first.headers['idempotent-replayed']).toBeUndefined();
      expect(second.status).toBe(first.status);
      expect(second.body).toEqual(first.body);
      // The replay is the stored text, sent as it was answered (RawJson, http/raw-json.ts).
      expect(second.text).toBe(first.text);
      expect(second.headers['content-type']).toBe(
        first.headers['content-type'],
      );
      expect(second.headers['content-type']).toBe(
        'application/json; charset=utf-8',
      );
      expect(second.headers['idempotent-replayed']).toBe('true');
      expect(await tripsWith(a, body.reference)).toBe(1);
      expect(await eventsOfTrip(a, first.body.id, 'trip.created')).toBe(1);
    });

    it('should replay a delay: one delay, one event, one delivery, one webhook', async () => {
      const trip = await createTrip();
      const key = newKey();
      const send = () =>
        api()
          .post(`/v1/trips/${trip.id}/delays`)
          .set(a.auth)
          .set('idempotency-key', key)
          .send({ minutes: 20, reason: 'strike' });
      const first = await send();
      expect(first.status).toBe(201);
      await deliveriesSettled(svc, a, first.body.event.id);
      const before = receiver.received.length;
      watch.reset();

      const second = await send();
      expect(second.status).toBe(201);
      expect(second.headers['idempotent-replayed']).toBe('true');
      expect(second.body).toEqual(first.body);
      expect(await watch.jobsFor(svc.dataSource, [a.id])).toEqual([]);

      const stored = await api()
        .get(`/v1/trips/${trip.id}`)
        .set(a.auth)
        .expect(200);
      expect(stored.body.delayMinutesTotal).toBe(20);
      expect(
        await count(
          'SELECT count(*)::int AS count FROM trip_delays WHERE trip_id = $1',
          [trip.id],
        ),
      ).toBe(1);
      expect(await eventsOfTrip(a, trip.id, 'trip.delayed')).toBe(1);
      expect(
        await count(
          'SELECT count(*)::int AS count FROM deliveries WHERE event_id = $1',
          [first.body.event.id],
        ),
      ).toBe(1);
      // The webhook of the first request was delivered once; the replay sent nothing.
      expect(
        receiver.received.filter(
          (r) => r.headers['webhook-id'] === first.body.event.id,
        ),
      ).toHaveLength(1);
      expect(receiver.received).toHaveLength(before);
    });

    it('should replay a 200 (arrival) with its status', async () => {
      const trip = await createTrip();
      const key = newKey();
      const send = () =>
        api()
          .post(`/v1/trips/${trip.id}/arrival`)
          .set(a.auth)
          .set('idempotency-key', key);
      const first = await send();
      const second = await send();
      expect([first.status, second.status]).toEqual([200, 200]);
      expect(second.body).toEqual(first.body);
      expect(second.headers['idempotent-replayed']).toBe('true');
      expect(await eventsOfTrip(a, trip.id, 'trip.arrived')).toBe(1);
    });

    it('should replay a 202 (manual retry) without queueing a second attempt', async () => {
      const trip = await createTrip();
      const delay = await api()
        .post(`/v1/trips/${trip.id}/delays`)
        .set(a.auth)
        .send({ minutes: 5, reason: 'fog' })
        .expect(201);
      const [delivery] = await deliveriesSettled(svc, a, delay.body.event.id);
      const key = newKey();
      watch.reset();
      const send = () =>
        api()
          .post(`/v1/deliveries/${delivery.id}/retry`)
          .set(a.auth)
          .set('idempotency-key', key);
      const first = await send();
      const second = await send();
      expect([first.status, second.status]).toEqual([202, 202]);
      expect(second.body).toEqual(first.body);
      expect(second.headers['idempotent-replayed']).toBe('true');
      const attempts = await eventually(async () => {
        const log = await api()
          .get(`/v1/events/${delay.body.event.id}/deliveries`)
          .set(a.auth);
        const all: any[] = log.body.data?.[0]?.attempts ?? [];
        return all.length === 2 && all[1].finishedAt && all;
      }, 'the manual attempt');
      expect(attempts.map((t: any) => t.trigger)).toEqual([
        'scheduled',
        'manual',
      ]);
      // One job for the two requests: no third attempt can follow.
      expect(watch.deliveryIds().filter((id) => id === delivery.id)).toEqual([
        delivery.id,
      ]);
    });
  });

  describe('when the same key comes with another body', () => {
    it('should answer 422 and create nothing', async () => {
      const key = newKey();
      const body = tripBody();
      await api()
        .post('/v1/trips')
        .set(a.auth)
        .set('idempotency-key', key)
        .send(body)
        .expect(201);
      const other = tripBody();
      const res = await api()
        .post('/v1/trips')
        .set(a.auth)
        .set('idempotency-key', key)
        .send(other);
      expect(res.status).toBe(422);
      expect(messageOf(res)).toMatch(
        /was already used with a different request within 24 h; use a new key/,
      );
      expect(await tripsWith(a, other.reference)).toBe(0);
    });
  });

  describe('when another account uses the same key string', () => {
    it('should treat it as that account’s own key', async () => {
      const key = newKey();
      const first = await api()
        .post('/v1/trips')
        .set(a.auth)
        .set('idempotency-key', key)
        .send(tripBody())
        .expect(201);
      const body = tripBody();
      const res = await api()
        .post('/v1/trips')
        .set(b.auth)
        .set('idempotency-key', key)
        .send(body);
      expect(res.status).toBe(201);
      expect(res.headers['idempotent-replayed']).toBeUndefined();
      expect(res.body.id).not.toBe(first.body.id);
      expect(await tripsWith(b, body.reference)).toBe(1);

      // Even the very same body under B's key is B's trip, not a replay of A's.
      const same = await api()
        .post('/v1/events')
        .set(b.auth)
        .set('idempotency-key', `${key}-event`)
        .send({ type: 'parcel.scanned', payload: { n: 1 } })
        .expect(201);
      const sameForA = await api()
        .post('/v1/events')
        .set(a.auth)
        .set('idempotency-key', `${key}-event`)
        .send({ type: 'parcel.scanned', payload: { n: 1 } })
        .expect(201);
      expect(sameForA.headers['idempotent-replayed']).toBeUndefined();
      expect(sameForA.body.id).not.toBe(same.body.id);
    });
  });

  describe('when the first request with a key failed', () => {
    it('should not burn the key on a 409', async () => {
      const taken = await createTrip();
      const key = newKey();
      const duplicate = tripBody({ reference: taken.reference });
      const conflict = await api()
        .post('/v1/trips')
        .set(a.auth)
        .set('idempotency-key', key)
        .send(duplicate);
      expect(conflict.status).toBe(409);
      // The failure is not stored: the same request fails afresh rather than being replayed.
      const again = await api()
        .post('/v1/trips')
        .set(a.auth)
        .set('idempotency-key', key)
        .send(duplicate);
      expect(again.status).toBe(409);
      expect(again.headers['idempotent-replayed']).toBeUndefined();
      const fixed = tripBody();
      const res = await api()
        .post('/v1/trips')
        .set(a.auth)
        .set('idempotency-key', key)
        .send(fixed);
      expect(res.status).toBe(201);
      expect(res.headers['idempotent-replayed']).toBeUndefined();
      expect(await tripsWith(a, fixed.reference)).toBe(1);
    });

    it('should not burn the key on a 404', async () => {
      const key = newKey();
      const missing = await api()
        .post(`/v1/trips/${randomUUID()}/delays`)
        .set(a.auth)
        .set('idempotency-key', key)
        .send({ minutes: 5, reason: 'fog' });
      expect(missing.status).toBe(404);
      const trip = await createTrip();
      const res = await api()
        .post(`/v1/trips/${trip.id}/delays`)
        .set(a.auth)
        .set('idempotency-key', key)
        .send({ minutes: 5, reason: 'fog' });
      expect(res.status).toBe(201);
      expect(res.headers['idempotent-replayed']).toBeUndefined();
    });

    it('should not burn the key on a 400', async () => {
      const key = newKey();
      const body = tripBody();
      await api()
        .post('/v1/trips')
        .set(a.auth)
        .set('idempotency-key', key)
        .send({ ...body, plannedArrival: 'soon' })
        .expect(400);
      await api()
        .post('/v1/trips')
        .set(a.auth)
        .set('idempotency-key', key)
        .send(body)
        .expect(201);
      expect(await tripsWith(a, body.reference)).toBe(1);
    });
  });

  describe('when a key is older than 24 h', () => {
    it('should be forgotten, so the next request with it runs', async () => {
      const key = newKey();
      await api()
        .post('/v1/trips')
        .set(a.auth)
        .set('idempotency-key', key)
        .send(tripBody())
        .expect(201);
      await svc.dataSource.query(
        `UPDATE idempotency_keys SET created_at = now() - interval '25 hours'
         WHERE account_id = $1 AND key = $2`,
        [a.id, key],
      );
      const body = tripBody();
      const res = await api()
        .post('/v1/trips')
        .set(a.auth)
        .set('idempotency-key', key)
        .send(body);
      expect(res.status).toBe(201);
      expect(res.headers['idempotent-replayed']).toBeUndefined();
      expect(await tripsWith(a, body.reference)).toBe(1);
    });
  });

  describe('when requests with the same key run concurrently', () => {
    it('should create exactly one trip and answer all with it', async () => {
      const key = newKey();
      const body = tripBody();
      const responses = await Promise.all(
        Array.from({ length: 8 }, () =>
          api()
            .post('/v1/trips')
            .set(a.auth)
            .set('idempotency-key', key)
            .send(body),
        ),
      );
      expect(responses.map((r) => r.status)).toEqual(Array(8).fill(201));
      const ids = new Set(responses.map((r) => r.body.id));
      expect(ids.size).toBe(1);
      expect(
        responses.filter((r) => r.headers['idempotent-replayed'] === 'true'),
      ).toHaveLength(7);
      expect(await tripsWith(a, body.reference)).toBe(1);
      expect(await eventsOfTrip(a, [...ids][0], 'trip.created')).toBe(1);
    });

    it('should record exactly one delay, event and delivery', async () => {
      const trip = await createTrip();
      const key = newKey();
      const responses = await Promise.all(
        Array.from({ length: 8 }, () =>
          api()
            .post(`/v1/trips/${trip.id}/delays`)
            .set(a.auth)
            .set('idempotency-key', key)
            .send({ minutes: 7, reason: 'traffic' }),
        ),
      );
      expect(responses.map((r) => r.status)).toEqual(Array(8).fill(201));
      const eventIds = new Set(responses.map((r) => r.body.event.id));
      expect(eventIds.size).toBe(1);
      const [eventId] = [...eventIds];
      await deliveriesSettled(svc, a, eventId);
      const stored = await api()
        .get(`/v1/trips/${trip.id}`)
        .set(a.auth)
        .expect(200);
      expect(stored.body.delayMinutesTotal).toBe(7);
      expect(await eventsOfTrip(a, trip.id, 'trip.delayed')).toBe(1);
      expect(
        await count(
          'SELECT count(*)::int AS count FROM deliveries WHERE event_id = $1',
          [eventId],
        ),
      ).toBe(1);
      expect(
        receiver.received.filter((r) => r.headers['webhook-id'] === eventId),
      ).toHaveLength(1);
    });
  });
});
