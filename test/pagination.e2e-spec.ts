import request from 'supertest';
import { Tenant, createTenant, messageOf, tripBody } from './support/api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

/** Follows `nextCursor` from the first page to the last; resolves with every page's data. */
async function allPages(
  svc: E2eApp,
  tenant: Tenant,
  path: string,
  query: Record<string, string | number> = {},
): Promise<any[][]> {
  const pages: any[][] = [];
  let cursor: string | null = null;
  do {
    const res: request.Response = await request(svc.url)
      .get(path)
      .query({ ...query, ...(cursor ? { cursor } : {}) })
      .set(tenant.auth)
      .expect(200);
    expect(Object.keys(res.body).sort()).toEqual(['data', 'nextCursor']);
    pages.push(res.body.data);
    cursor = res.body.nextCursor;
    expect(pages.length).toBeLessThan(100);
  } while (cursor);
  return pages;
}

const ids = (pages: any[][]) => pages.flat().map((item) => item.id);

describe('when lists are read page by page', () => {
  let svc: E2eApp;
  let ok: Receiver;
  let failing: Receiver;
  let tenant: Tenant;
  let other: Tenant;

  beforeAll(async () => {
    // One attempt per delivery: a failing receiver fails its deliveries at once.
    svc = await startE2eApp({ retryScheduleMs: [0] });
    ok = await startReceiver();
    failing = await startReceiver((_n, _r, res) => {
      res.statusCode = 500;
      res.end('no');
    });
    [tenant, other] = await Promise.all([
      createTenant(svc, 'pages'),
      createTenant(svc, 'other'),
    ]);
  });

  afterAll(async () => {
    await Promise.all([ok?.close(), failing?.close()]);
    await svc?.close();
  });

  const api = () => request(svc.url);
  const createEndpoint = async (t: Tenant, url: string) =>
    (await api().post('/v1/endpoints').set(t.auth).send({ url }).expect(201))
      .body.id as string;

  it('should list endpoints oldest first, each once, across pages', async () => {
    const created: string[] = [];
    for (let i = 0; i < 7; i++)
      created.push(await createEndpoint(tenant, ok.url));
    await createEndpoint(other, ok.url);
    const pages = await allPages(svc, tenant, '/v1/endpoints', { limit: 3 });
    expect(pages.map((p) => p.length)).toEqual([3, 3, 1]);
    expect(ids(pages)).toEqual(created);
    expect(JSON.stringify(pages)).not.toContain('secret');
  });

  it('should keep its place when rows are added between pages', async () => {
    const first = await api()
      .get('/v1/endpoints')
      .query({ limit: 4 })
      .set(tenant.auth)
      .expect(200);
    const added = await createEndpoint(tenant, ok.url);
    const rest = await allPages(svc, tenant, '/v1/endpoints', {
      limit: 4,
      cursor: first.body.nextCursor,
    });
    const seen = [...first.body.data.map((e: any) => e.id), ...ids(rest)];
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen[seen.length - 1]).toBe(added);
    // Tidy up: only this endpoint takes deliveries from here on.
    for (const id of seen) {
      await api().delete(`/v1/endpoints/${id}`).set(tenant.auth).expect(204);
    }
  });

  describe('when events, deliveries and attempts pile up', () => {
    let okEndpoint: string;
    let failingEndpoint: string;
    let trip: { id: string };
    const events: { id: string; type: string }[] = [];
    let middle: string;

    beforeAll(async () => {
      okEndpoint = await createEndpoint(tenant, ok.url);
      failingEndpoint = await createEndpoint(tenant, failing.url);
      trip = (
        await api()
          .post('/v1/trips')
          .set(tenant.auth)
          .send(tripBody())
          .expect(201)
      ).body;
      for (let i = 0; i < 5; i++) {
        const type = i % 2 ? 'parcel.scanned' : 'parcel.lost';
        const res = await api()
          .post('/v1/events')
          .set(tenant.auth)
          .set('content-type', 'application/json')
          .send(`{"type": "${type}", "payload": {"n": ${i}, "big": 1e400}}`)
          .expect(201);
        events.push({ id: res.body.id, type });
        if (i === 2) middle = res.body.createdAt;
      }
      await api()
        .post(`/v1/trips/${trip.id}/delays`)
        .set(tenant.auth)
        .send({ minutes: 5, reason: 'fog' })
        .expect(201);
      await api()
        .post('/v1/events')
        .set(other.auth)
        .send({ type: 'parcel.lost', payload: {} })
        .expect(201);
      await eventually(async () => {
        const [{ busy }] = await svc.dataSource.query(
          `SELECT count(*)::int AS busy FROM deliveries
            WHERE account_id = $1 AND status IN ('pending', 'sending')`,
          [tenant.id],
        );
        return busy === 0;
      }, 'every delivery to be final');
    });

    it('should list events newest first, payloads as sent, filtered by type, trip and time', async () => {
      const all = await allPages(svc, tenant, '/v1/events', { limit: 2 });
      const listed = all.flat();
      // Newest first: the delay, the five generic events in reverse, the trip's creation.
      expect(listed.map((e) => e.type)).toEqual([
        'trip.delayed',
        ...events.map((e) => e.type).reverse(),
        'trip.created',
      ]);
      expect(listed.slice(1, 6).map((e) => e.id)).toEqual(
        events.map((e) => e.id).reverse(),
      );
      const raw = await api()
        .get('/v1/events')
        .query({ type: 'parcel.lost', limit: 1 })
        .set(tenant.auth)
        .expect(200);
      expect(raw.text).toContain('"payload":{"n": 4, "big": 1e400}');

      const lost = await allPages(svc, tenant, '/v1/events', {
        type: 'parcel.lost',
        limit: 2,
      });
      expect(ids(lost)).toEqual(
        events
          .filter((e) => e.type === 'parcel.lost')
          .map((e) => e.id)
          .reverse(),
      );
      const ofTrip = await allPages(svc, tenant, '/v1/events', {
        tripId: trip.id,
        limit: 1,
      });
      expect(ofTrip.flat().map((e) => e.type)).toEqual([
        'trip.delayed',
        'trip.created',
      ]);
      const until = await allPages(svc, tenant, '/v1/events', {
        until: middle,
      });
      expect(until.flat().map((e) => e.id ?? e.type)).toEqual([
        events[1].id,
        events[0].id,
        listed[listed.length - 1].id,
      ]);
      const since = await allPages(svc, tenant, '/v1/events', {
        since: middle,
        type: 'parcel.scanned',
      });
      expect(ids(since)).toEqual([events[3].id]);
    });

    it('should list deliveries newest first, filtered by status and endpoint', async () => {
      const failed = await allPages(svc, tenant, '/v1/deliveries', {
        status: 'failed',
        endpointId: failingEndpoint,
        limit: 2,
      });
      expect(failed.map((p) => p.length)).toEqual([2, 2, 2, 1]);
      expect(
        failed
          .flat()
          .every(
            (d) => d.status === 'failed' && d.endpointId === failingEndpoint,
          ),
      ).toBe(true);
      const times = failed.flat().map((d) => Date.parse(d.createdAt));
      expect([...times].sort((a, b) => b - a)).toEqual(times);
      const fine = await allPages(svc, tenant, '/v1/deliveries', {
        endpointId: okEndpoint,
        status: 'succeeded',
      });
      expect(fine.flat()).toHaveLength(7);
      const foreign = await allPages(svc, other, '/v1/deliveries', {
        endpointId: okEndpoint,
      });
      expect(foreign.flat()).toEqual([]);
      const one = failed[0][0];
      const single = await api()
        .get(`/v1/deliveries/${one.id}`)
        .set(tenant.auth)
        .expect(200);
      expect(single.body).toMatchObject({ id: one.id, status: 'failed' });
      await api().get(`/v1/deliveries/${one.id}`).set(other.auth).expect(404);
    });

    it('should list a delivery’s attempts in order, and an event’s deliveries by page', async () => {
      const [[delivery]] = await allPages(svc, tenant, '/v1/deliveries', {
        status: 'failed',
        limit: 1,
      });
      for (let i = 0; i < 2; i++) {
        await api()
          .post(`/v1/deliveries/${delivery.id}/retry`)
          .set(tenant.auth)
          .expect(202);
        await eventually(async () => {
          const res = await api()
            .get(`/v1/deliveries/${delivery.id}`)
            .set(tenant.auth);
          return (
            res.body.attemptCount === i + 2 && res.body.status === 'failed'
          );
        }, 'the manual attempt');
      }
      const attempts = await allPages(
        svc,
        tenant,
        `/v1/deliveries/${delivery.id}/attempts`,
        { limit: 1 },
      );
      expect(attempts.flat().map((a) => [a.number, a.trigger])).toEqual([
        [1, 'scheduled'],
        [2, 'manual'],
        [3, 'manual'],
      ]);
      const log = await allPages(
        svc,
        tenant,
        `/v1/events/${delivery.eventId}/deliveries`,
        { limit: 1 },
      );
      expect(log.map((p) => p.length)).toEqual([1, 1]);
      const withAttempts = log.flat().find((d) => d.id === delivery.id);
      expect(withAttempts.attempts.map((a: any) => a.number)).toEqual([
        1, 2, 3,
      ]);
    });
  });

  describe('when a page is asked for wrongly', () => {
    it.each([
      ['/v1/endpoints?limit=0', /limit must be a whole number from 1 to 100/],
      ['/v1/endpoints?limit=101', /limit must be a whole number from 1 to 100/],
      ['/v1/events?limit=abc', /limit must be a whole number from 1 to 100/],
      ['/v1/events?limit=1.5', /limit must be a whole number from 1 to 100/],
      ['/v1/events?limit=', /limit must be a whole number from 1 to 100/],
      ['/v1/events?limit=1&limit=2', /limit must be a whole number/],
      [
        '/v1/deliveries?cursor=garbage',
        /cursor is not valid: pass the nextCursor/,
      ],
      [
        `/v1/deliveries?cursor=${Buffer.from('[5]').toString('base64url')}`,
        /cursor is not valid/,
      ],
      [
        `/v1/endpoints?cursor=${Buffer.from('["2024-01-01T00:00:00.000000Z","x"]').toString('base64url')}`,
        /cursor is not valid/,
      ],
      [
        `/v1/events?cursor=${Buffer.from('["2024-13-45T99:00:00.000000Z","3f0c2a1e-8f4b-4c55-9a59-7b1f9f6c2d10"]').toString('base64url')}`,
        /cursor is not valid/,
      ],
      [
        `/v1/events?cursor=${Buffer.from('["2024-02-30T00:00:00.000000Z","3f0c2a1e-8f4b-4c55-9a59-7b1f9f6c2d10"]').toString('base64url')}`,
        /cursor is not valid/,
      ],
      ['/v1/events?sort=asc', /property sort should not exist/],
      ['/v1/events?type=Not%20A%20Type', /type must be dot-separated words/],
      ['/v1/events?tripId=42', /tripId must be a UUID/],
      ['/v1/events?since=yesterday', /since must be an ISO 8601 date-time/],
      [
        '/v1/events?until=2024-W01-1',
        /until must be an ISO 8601 date-time in the RFC 3339 form YYYY-MM-DDTHH:MM:SS/,
      ],
      [
        '/v1/deliveries?status=lost',
        /status must be one of pending, sending, succeeded, failed/,
      ],
      ['/v1/deliveries?endpointId=x', /endpointId must be a UUID/],
    ])('should answer 400 to %s', async (path, message) => {
      const res = await request(svc.url).get(path).set(tenant.auth);
      expect({ status: res.status, message: messageOf(res) }).toEqual({
        status: 400,
        message: expect.stringMatching(message),
      });
    });

    it.each(
      [
        '__proto__',
        'constructor',
        'hasOwnProperty',
        'toString',
        'valueOf',
      ].flatMap((key) =>
        ['/v1/events', '/v1/deliveries', '/v1/endpoints'].map((path) => [
          `${path}?${key}=1`,
          key,
        ]),
      ),
    )(
      'should answer 400 to %s like any unknown query key',
      async (path, key) => {
        const res = await request(svc.url).get(path).set(tenant.auth);
        expect({ status: res.status, message: messageOf(res) }).toEqual({
          status: 400,
          message: `property ${key} should not exist`,
        });
      },
    );

    it('should answer 400 to a query key named like Object.prototype members on nested lists', async () => {
      const [[delivery]] = await allPages(svc, tenant, '/v1/deliveries', {
        limit: 1,
      });
      for (const [path, key] of [
        [`/v1/deliveries/${delivery.id}/attempts`, 'toString'],
        [`/v1/events/${delivery.eventId}/deliveries`, '__proto__'],
      ]) {
        await request(svc.url).get(path).set(tenant.auth).expect(200);
        const res = await request(svc.url)
          .get(`${path}?${key}=1`)
          .set(tenant.auth);
        expect({ path, status: res.status, message: messageOf(res) }).toEqual({
          path,
          status: 400,
          message: `property ${key} should not exist`,
        });
      }
    });

    it('should answer 400 to an attempts cursor that is not a number', async () => {
      const [[delivery]] = await allPages(svc, tenant, '/v1/deliveries', {
        limit: 1,
      });
      const cursor = Buffer.from('["x"]').toString('base64url');
      const res = await request(svc.url)
        .get(`/v1/deliveries/${delivery.id}/attempts?cursor=${cursor}`)
        .set(tenant.auth);
      expect({ status: res.status, message: messageOf(res) }).toEqual({
        status: 400,
        message: expect.stringMatching(/cursor is not valid/),
      });
    });
  });
});
