/**
 * Red team: dates and cursors a hostile tenant sends to the list, recover and trip routes.
 * Every one must be a 4xx with a JSON message (or a 200), never a 500, and change nothing.
 */
import request from 'supertest';
import {
  Tenant,
  createTenant,
  fingerprint,
  messageOf,
  tripBody,
} from './support/api';
import { E2eApp, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

const cursorOf = (value: unknown) =>
  Buffer.from(JSON.stringify(value)).toString('base64url');

/** ISO 8601 spellings class-validator's strict IsDateString accepts but Postgres refuses. */
const PG_REFUSED_ISO = [
  '2024',
  '2024-01',
  '2024-W01-1',
  '2024-01-01T10Z',
  '2024-01-01T10:00:00,5Z',
  '9999-12-31T23:59:59+23:59',
];

/** ISO 8601 spellings accepted by the validator but that JavaScript's Date cannot read. */
const JS_NAN_ISO = ['2024-W01-1', '20240101T100000Z', '2024-01-01T10Z'];

describe('redteam: dates and cursors', () => {
  let svc: E2eApp;
  let receiver: Receiver;
  let a: Tenant;
  let b: Tenant;
  let endpointId: string;
  let eventId: string;

  beforeAll(async () => {
    svc = await startE2eApp({ retryScheduleMs: [0] });
    receiver = await startReceiver();
    [a, b] = await Promise.all([
      createTenant(svc, 'rt-dates-a'),
      createTenant(svc, 'rt-dates-b'),
    ]);
    endpointId = (
      await request(svc.url)
        .post('/v1/endpoints')
        .set(a.auth)
        .send({ url: receiver.url })
        .expect(201)
    ).body.id;
    for (let i = 0; i < 3; i++) {
      eventId = (
        await request(svc.url)
          .post('/v1/events')
          .set(a.auth)
          .send({ type: 'rt.dates', payload: { i } })
          .expect(201)
      ).body.id;
    }
  });

  afterAll(async () => {
    await receiver?.close();
    await svc?.close();
  });

  const get = (path: string, t: Tenant = a) =>
    request(svc.url).get(path).set(t.auth);

  describe('GET /v1/events with a since/until Postgres cannot read', () => {
    it.each(
      PG_REFUSED_ISO.flatMap((d) => [
        ['since', d],
        ['until', d],
      ]),
    )('should not answer 500 to %s=%s', async (name, value) => {
      const res = await get(`/v1/events?${name}=${encodeURIComponent(value)}`);
      expect(res.status).not.toBe(500);
      expect([200, 400]).toContain(res.status);
      if (res.status === 400) {
        expect(messageOf(res)).toMatch(new RegExp(`${name} must be`));
      }
    });
  });

  describe('a time cursor of year 0000 (valid to JavaScript, not to Postgres)', () => {
    const zero = cursorOf([
      '0000-01-01T00:00:00.000000Z',
      '3f0c2a1e-8f4b-4c55-9a59-7b1f9f6c2d10',
    ]);
    it.each([
      ['/v1/events'],
      ['/v1/deliveries'],
      ['/v1/endpoints'],
      ['/v1/events/:event/deliveries'],
    ])('should answer 400 (cursor is not valid) on %s', async (path) => {
      const res = await get(
        `${path.replace(':event', eventId)}?cursor=${zero}`,
      );
      expect({ status: res.status, message: messageOf(res) }).toEqual({
        status: 400,
        message: expect.stringMatching(/cursor is not valid/),
      });
    });
  });

  describe('POST /v1/endpoints/:id/recover with a since JavaScript cannot read', () => {
    it.each(JS_NAN_ISO)(
      'should answer 400 (not 500) to since=%s and queue nothing',
      async (since) => {
        const before = await fingerprint(svc.dataSource, [a.id]);
        const res = await request(svc.url)
          .post(`/v1/endpoints/${endpointId}/recover`)
          .set(a.auth)
          .send({ since });
        expect(res.status).not.toBe(500);
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
        expect(await fingerprint(svc.dataSource, [a.id])).toEqual(before);
      },
    );
  });

  describe('POST /v1/trips with a plannedArrival Postgres or Date cannot read', () => {
    it.each(['2024-W01-1', '2024-01-01T10:00:00,5Z', '20240101T100000Z'])(
      'should answer 400 (not 500) to plannedArrival=%s and create nothing',
      async (plannedArrival) => {
        const before = await fingerprint(svc.dataSource, [a.id]);
        const res = await request(svc.url)
          .post('/v1/trips')
          .set(a.auth)
          .send(tripBody({ plannedArrival }));
        expect(res.status).not.toBe(500);
        expect({ status: res.status, message: messageOf(res) }).toEqual({
          status: 400,
          message: expect.stringMatching(/plannedArrival/),
        });
        expect(await fingerprint(svc.dataSource, [a.id])).toEqual(before);
      },
    );
  });

  describe('limits and cursors that must be refused (held)', () => {
    it.each([
      '/v1/events?limit=1e3',
      '/v1/events?limit=-1',
      '/v1/events?limit=abc',
      '/v1/events?limit=Infinity',
      '/v1/events?limit=100.0001',
      '/v1/deliveries?limit=99999999999999999999',
      `/v1/events?cursor=${'A'.repeat(201)}`,
      `/v1/events?cursor=${cursorOf(['2024-01-01T00:00:00.000000Z', '3F0C2A1E-8F4B-4C55-9A59-7B1F9F6C2D10'])}`,
      `/v1/events?cursor=${cursorOf({ at: '2024-01-01T00:00:00.000000Z' })}`,
      `/v1/events?cursor=${cursorOf(['2024-01-01T24:00:00.000000Z', '3f0c2a1e-8f4b-4c55-9a59-7b1f9f6c2d10'])}`,
      `/v1/events?cursor=${Buffer.from('\u0000\u00ff\u00fe').toString('base64')}`,
      '/v1/events?cursor=%E2%80%8B',
    ])('should answer 400 to %s', async (path) => {
      const res = await get(path);
      expect(res.status).toBe(400);
      expect(res.body.statusCode).toBe(400);
    });

    it.each([`[${2 ** 31}]`, '[-1]', '[1.5]', '["1"]', '[1,2]', '[null]'])(
      'should answer 400 to an attempts cursor %s',
      async (json) => {
        const [delivery] = (
          await get(`/v1/events/${eventId}/deliveries`).expect(200)
        ).body.data;
        const res = await get(
          `/v1/deliveries/${delivery.id}/attempts?cursor=${Buffer.from(json).toString('base64url')}`,
        );
        expect(res.status).toBe(400);
      },
    );
  });

  describe('another tenant’s cursor (held)', () => {
    it('should page only through the caller’s own rows', async () => {
      const page = (await get('/v1/events?limit=1').expect(200)).body;
      expect(page.nextCursor).toEqual(expect.any(String));
      for (const path of ['/v1/events', '/v1/deliveries', '/v1/endpoints']) {
        const res = await get(`${path}?cursor=${page.nextCursor}`, b).expect(
          200,
        );
        expect(res.body.data).toEqual([]);
      }
      const res = await get(
        `/v1/events/${eventId}/deliveries?cursor=${page.nextCursor}`,
        b,
      );
      expect(res.status).toBe(404);
    });
  });
});
