import request from 'supertest';
import { Webhook } from 'standardwebhooks';
import { generateSecret } from '../src/webhooks-http/standard-webhooks-signer';
import {
  Tenant,
  createTenant,
  deliveriesSettled,
  tripBody,
} from './support/api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

describe('when endpoints are managed', () => {
  let svc: E2eApp;
  const receivers: Receiver[] = [];

  beforeAll(async () => {
    svc = await startE2eApp();
  });

  afterAll(async () => {
    await svc?.close();
    await Promise.all(receivers.map((r) => r.close()));
  });

  const api = () => request(svc.url);
  const receiver = async (...args: Parameters<typeof startReceiver>) => {
    const started = await startReceiver(...args);
    receivers.push(started);
    return started;
  };
  const createEndpoint = async (tenant: Tenant, body: object) =>
    (await api().post('/v1/endpoints').set(tenant.auth).send(body).expect(201))
      .body;
  const delayTrip = async (tenant: Tenant, minutes = 10) => {
    const trip = await api()
      .post('/v1/trips')
      .set(tenant.auth)
      .send(tripBody())
      .expect(201);
    const delay = await api()
      .post(`/v1/trips/${trip.body.id}/delays`)
      .set(tenant.auth)
      .send({ minutes, reason: 'roadworks' })
      .expect(201);
    return { trip: trip.body, event: delay.body.event };
  };

  describe('when an endpoint goes through create, read, update and delete', () => {
    let tenant: Tenant;
    let hook: Receiver;

    beforeAll(async () => {
      tenant = await createTenant(svc, 'crud');
      hook = await receiver();
    });

    it('should round-trip and never show the secret outside its own route', async () => {
      const created = await createEndpoint(tenant, {
        url: hook.url,
        description: 'ops alerts',
        eventTypes: ['trip.delayed', 'trip.arrived'],
      });
      expect(created).toMatchObject({
        id: expect.any(String),
        url: hook.url,
        description: 'ops alerts',
        eventTypes: ['trip.delayed', 'trip.arrived'],
        disabled: false,
        disabledReason: null,
        secret: expect.stringMatching(/^whsec_[A-Za-z0-9+/]+={0,2}$/),
      });
      const { secret } = created;

      const read = await api()
        .get(`/v1/endpoints/${created.id}`)
        .set(tenant.auth)
        .expect(200);
      const withoutSecret = { ...created };
      delete withoutSecret.secret;
      expect(read.body).toEqual(withoutSecret);
      const list = await api()
        .get('/v1/endpoints')
        .set(tenant.auth)
        .expect(200);
      expect(list.body.data).toEqual([withoutSecret]);
      for (const body of [read.body, list.body]) {
        expect(JSON.stringify(body)).not.toContain(secret);
        expect(JSON.stringify(body)).not.toMatch(/whsec_|"secrets?"/);
      }
      const own = await api()
        .get(`/v1/endpoints/${created.id}/secret`)
        .set(tenant.auth)
        .expect(200);
      expect(own.body).toEqual({ secret });

      const other = await receiver();
      const patched = await api()
        .patch(`/v1/endpoints/${created.id}`)
        .set(tenant.auth)
        .send({ url: other.url, description: '', eventTypes: ['trip.created'] })
        .expect(200);
      expect(patched.body).toMatchObject({
        id: created.id,
        url: other.url,
        description: '',
        eventTypes: ['trip.created'],
      });
      expect(patched.body).not.toHaveProperty('secret');
      expect(
        (
          await api()
            .get(`/v1/endpoints/${created.id}`)
            .set(tenant.auth)
            .expect(200)
        ).body,
      ).toEqual(patched.body);
      // A patch leaves the secret alone.
      expect(
        (
          await api()
            .get(`/v1/endpoints/${created.id}/secret`)
            .set(tenant.auth)
            .expect(200)
        ).body,
      ).toEqual({ secret });

      await api()
        .delete(`/v1/endpoints/${created.id}`)
        .set(tenant.auth)
        .expect(204)
        .expect((res) => expect(res.text).toBe(''));
      await api()
        .get(`/v1/endpoints/${created.id}`)
        .set(tenant.auth)
        .expect(404);
      await api()
        .get(`/v1/endpoints/${created.id}/secret`)
        .set(tenant.auth)
        .expect(404);
      await api()
        .delete(`/v1/endpoints/${created.id}`)
        .set(tenant.auth)
        .expect(404);
      const after = await api()
        .get('/v1/endpoints')
        .set(tenant.auth)
        .expect(200);
      expect(after.body.data).toEqual([]);
    });

    it('should list endpoints oldest first and accept null for all types or no description', async () => {
      const first = await createEndpoint(tenant, {
        url: hook.url,
        description: 'to be cleared',
      });
      const second = await createEndpoint(tenant, {
        url: hook.url,
        eventTypes: ['trip.arrived'],
      });
      expect(first.eventTypes).toBeNull();
      const patched = await api()
        .patch(`/v1/endpoints/${second.id}`)
        .set(tenant.auth)
        .send({ eventTypes: null })
        .expect(200);
      expect(patched.body.eventTypes).toBeNull();
      // null clears the description, as it does on creation.
      const cleared = await api()
        .patch(`/v1/endpoints/${first.id}`)
        .set(tenant.auth)
        .send({ description: null })
        .expect(200);
      expect(cleared.body.description).toBe('');
      const list = await api()
        .get('/v1/endpoints')
        .set(tenant.auth)
        .expect(200);
      expect(list.body.data.map((e: any) => e.id)).toEqual([
        first.id,
        second.id,
      ]);
      expect(first.secret).not.toBe(second.secret);
    });
  });

  describe('when the secret is rotated', () => {
    it('should sign with the old and the new secret, each verifying on its own', async () => {
      const tenant = await createTenant(svc, 'rotate');
      const hook = await receiver();
      const endpoint = await createEndpoint(tenant, { url: hook.url });
      const rotated = await api()
        .post(`/v1/endpoints/${endpoint.id}/rotate-secret`)
        .set(tenant.auth)
        .expect(201);
      expect(rotated.body).toEqual({
        secret: expect.stringMatching(/^whsec_/),
      });
      expect(rotated.body.secret).not.toBe(endpoint.secret);
      const current = await api()
        .get(`/v1/endpoints/${endpoint.id}/secret`)
        .set(tenant.auth)
        .expect(200);
      expect(current.body.secret).toBe(rotated.body.secret);
      const read = await api()
        .get(`/v1/endpoints/${endpoint.id}`)
        .set(tenant.auth)
        .expect(200);
      expect(JSON.stringify(read.body)).not.toMatch(/whsec_/);

      const { event } = await delayTrip(tenant);
      await deliveriesSettled(svc, tenant, event.id);
      const got = hook.received.find(
        (r) => r.headers['webhook-id'] === event.id,
      );
      expect(got).toBeDefined();
      const signatures = String(got!.headers['webhook-signature']).split(' ');
      expect(signatures).toHaveLength(2);
      expect(signatures.every((s) => s.startsWith('v1,'))).toBe(true);
      for (const secret of [endpoint.secret, rotated.body.secret]) {
        expect(
          new Webhook(secret).verify(got!.body, got!.headers as any),
        ).toMatchObject({
          type: 'trip.delayed',
          data: { delay: { minutes: 10 } },
        });
      }
      expect(() =>
        new Webhook(generateSecret()).verify(got!.body, got!.headers as any),
      ).toThrow();
    });

    it('should sign with every active secret after two rotations', async () => {
      const tenant = await createTenant(svc, 'rotate-twice');
      const hook = await receiver();
      const endpoint = await createEndpoint(tenant, { url: hook.url });
      const secrets = [endpoint.secret];
      for (let i = 0; i < 2; i++) {
        const res = await api()
          .post(`/v1/endpoints/${endpoint.id}/rotate-secret`)
          .set(tenant.auth)
          .expect(201);
        secrets.push(res.body.secret);
      }
      expect(new Set(secrets).size).toBe(3);
      const { event } = await delayTrip(tenant);
      await deliveriesSettled(svc, tenant, event.id);
      const got = hook.received.find(
        (r) => r.headers['webhook-id'] === event.id,
      )!;
      expect(String(got.headers['webhook-signature']).split(' ')).toHaveLength(
        3,
      );
      for (const secret of secrets) {
        expect(() =>
          new Webhook(secret).verify(got.body, got.headers as any),
        ).not.toThrow();
      }
    });
  });

  describe('when an endpoint was disabled', () => {
    it('should deliver again once enabled', async () => {
      const tenant = await createTenant(svc, 'enable');
      // Answers 410 Gone once, which disables the endpoint, then 200.
      const hook = await receiver((n, _r, res) => {
        res.statusCode = n === 0 ? 410 : 200;
        res.end(n === 0 ? 'gone' : 'ok');
      });
      const endpoint = await createEndpoint(tenant, {
        url: hook.url,
        eventTypes: ['trip.delayed', 'parcel.scanned'],
      });
      const first = await delayTrip(tenant);
      await deliveriesSettled(svc, tenant, first.event.id, 1, 'failed');
      const disabled = await api()
        .get(`/v1/endpoints/${endpoint.id}`)
        .set(tenant.auth)
        .expect(200);
      expect(disabled.body).toMatchObject({
        disabled: true,
        disabledReason: expect.stringMatching(/410/),
      });

      // While disabled, new events get no delivery to it.
      const skipped = await api()
        .post('/v1/events')
        .set(tenant.auth)
        .send({ type: 'parcel.scanned', payload: { n: 1 } })
        .expect(201);
      expect(skipped.body.deliveries).toBe(0);

      const enabled = await api()
        .post(`/v1/endpoints/${endpoint.id}/enable`)
        .set(tenant.auth)
        .expect(200);
      expect(enabled.body).toMatchObject({
        id: endpoint.id,
        disabled: false,
        disabledReason: null,
      });
      expect(enabled.body).not.toHaveProperty('secret');
      // Enabling an enabled endpoint is harmless.
      await api()
        .post(`/v1/endpoints/${endpoint.id}/enable`)
        .set(tenant.auth)
        .expect(200);

      const second = await delayTrip(tenant, 30);
      expect(second.event.deliveries).toBe(1);
      await deliveriesSettled(svc, tenant, second.event.id);
      const got = hook.received.find(
        (r) => r.headers['webhook-id'] === second.event.id,
      )!;
      expect(
        new Webhook(endpoint.secret).verify(got.body, got.headers as any),
      ).toMatchObject({ data: { delay: { minutes: 30 } } });
      expect(hook.received).toHaveLength(2);
    });
  });

  describe('when an endpoint subscribes to some event types', () => {
    it('should get only those types', async () => {
      const tenant = await createTenant(svc, 'filter');
      const arrivals = await receiver();
      const delays = await receiver();
      const arrivalsOnly = await createEndpoint(tenant, {
        url: arrivals.url,
        eventTypes: ['trip.arrived'],
      });
      const delaysOnly = await createEndpoint(tenant, {
        url: delays.url,
        eventTypes: ['trip.delayed'],
      });

      const { trip, event } = await delayTrip(tenant);
      expect(event.deliveries).toBe(1);
      const [delivery] = await deliveriesSettled(svc, tenant, event.id);
      expect(delivery.endpointId).toBe(delaysOnly.id);
      expect(delays.received).toHaveLength(1);
      // The delayed event was delivered to its subscriber; nothing went to the other one.
      expect(arrivals.received).toEqual([]);

      await api()
        .post(`/v1/trips/${trip.id}/arrival`)
        .set(tenant.auth)
        .expect(200);
      const got = await eventually(() => arrivals.received[0], 'the arrival');
      expect(
        new Webhook(arrivalsOnly.secret).verify(got.body, got.headers as any),
      ).toMatchObject({
        type: 'trip.arrived',
        data: { trip: { id: trip.id } },
      });
      const [arrived] = await svc.dataSource.query(
        `SELECT id FROM events WHERE account_id = $1 AND type = 'trip.arrived'`,
        [tenant.id],
      );
      await deliveriesSettled(svc, tenant, arrived.id);
      expect(arrivals.received).toHaveLength(1);
      expect(delays.received).toHaveLength(1);
    });

    it('should follow a change of subscription', async () => {
      const tenant = await createTenant(svc, 'resubscribe');
      const hook = await receiver();
      const endpoint = await createEndpoint(tenant, {
        url: hook.url,
        eventTypes: ['trip.arrived'],
      });
      const before = await delayTrip(tenant);
      expect(before.event.deliveries).toBe(0);
      await api()
        .patch(`/v1/endpoints/${endpoint.id}`)
        .set(tenant.auth)
        .send({ eventTypes: ['trip.arrived', 'trip.delayed'] })
        .expect(200);
      const after = await delayTrip(tenant);
      expect(after.event.deliveries).toBe(1);
      await deliveriesSettled(svc, tenant, after.event.id);
      expect(hook.received.map((r) => r.headers['webhook-id'])).toEqual([
        after.event.id,
      ]);
    });
  });
});
