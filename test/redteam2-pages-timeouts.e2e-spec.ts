/**
 * Red team, round 2: pagination while rows are inserted between pages (no repeats, no rows
 * skipped), lists at limit=100 over deliveries with thousands of attempts, and a receiver
 * that answers 200 only after the attempt timed out.
 */
import request from 'supertest';
import { Tenant, createTenant } from './support/api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

jest.setTimeout(120_000);

describe('redteam2: pages and timeouts', () => {
  let svc: E2eApp;
  let tenant: Tenant;
  let receiver: Receiver;

  beforeAll(async () => {
    svc = await startE2eApp();
    tenant = await createTenant(svc, 'rt2-pages');
    // The first request is answered 200 after the 2 s attempt timeout; the others at once.
    receiver = await startReceiver((n, r, res) => {
      if (r.body.includes('"slow":true') && !slowAnswered) {
        slowAnswered = true;
        setTimeout(() => res.end('late ok'), 2600);
      } else res.end('ok');
    });
  });
  let slowAnswered = false;

  afterAll(async () => {
    await receiver.close();
    await svc.close();
  });

  async function emit(type: string, payload: object = {}) {
    const res: request.Response = await request(svc.url)
      .post('/v1/events')
      .set(tenant.auth)
      .send({ type, payload });
    expect(res.status).toBe(201);
    return res.body.id as string;
  }

  /** Pages through `path` with `limit`, calling `between` after every page. */
  async function pageAll(
    path: string,
    query: Record<string, string | number>,
    between: () => Promise<unknown> = async () => undefined,
  ): Promise<string[]> {
    const ids: string[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 500; pages++) {
      const res: request.Response = await request(svc.url)
        .get(path)
        .query({ ...query, ...(cursor ? { cursor } : {}) })
        .set(tenant.auth);
      expect(res.status).toBe(200);
      ids.push(...res.body.data.map((row: { id: string }) => row.id));
      cursor = res.body.nextCursor;
      if (!cursor) return ids;
      await between();
    }
    throw new Error('more than 500 pages');
  }

  function duplicates(ids: string[]): string[] {
    return ids.filter((id, i) => ids.indexOf(id) !== i);
  }

  describe('pages while rows are inserted', () => {
    it('should list events (newest first) with no repeat and no skip while events are added', async () => {
      const type = `rt2.page.e${Date.now()}`;
      const original: string[] = [];
      for (let i = 0; i < 30; i++) original.push(await emit(type, { i }));
      const seen = await pageAll('/v1/events', { type, limit: 7 }, () =>
        Promise.all([emit(type, { x: 1 }), emit(type, { x: 2 })]),
      );
      expect(duplicates(seen)).toEqual([]);
      expect(original.filter((id) => !seen.includes(id))).toEqual([]);
    });

    it('should list endpoints (oldest first) with no repeat and no skip while endpoints are added', async () => {
      const other = await createTenant(svc, 'rt2-pages-ep');
      const original: string[] = [];
      const create = async () =>
        (
          await request(svc.url)
            .post('/v1/endpoints')
            .set(other.auth)
            .send({ url: receiver.url, eventTypes: ['rt2.none'] })
            .expect(201)
        ).body.id as string;
      for (let i = 0; i < 25; i++) original.push(await create());
      const ids: string[] = [];
      let cursor: string | null = null;
      for (;;) {
        const res: request.Response = await request(svc.url)
          .get('/v1/endpoints')
          .query({ limit: 6, ...(cursor ? { cursor } : {}) })
          .set(other.auth)
          .expect(200);
        ids.push(...res.body.data.map((e: { id: string }) => e.id));
        cursor = res.body.nextCursor;
        if (!cursor) break;
        await Promise.all([create(), create()]);
      }
      expect(duplicates(ids)).toEqual([]);
      expect(original.filter((id) => !ids.includes(id))).toEqual([]);
      // Oldest first: the original rows come first, in creation order.
      expect(ids.slice(0, original.length)).toEqual(original);
    });

    it('should list deliveries (newest first) with no repeat and no skip while deliveries are added', async () => {
      const type = `rt2.page.d${Date.now()}`;
      const ep = (
        await request(svc.url)
          .post('/v1/endpoints')
          .set(tenant.auth)
          .send({ url: receiver.url, eventTypes: [type] })
          .expect(201)
      ).body.id;
      const events: string[] = [];
      for (let i = 0; i < 20; i++) events.push(await emit(type, { i }));
      const original = await svc.dataSource.query(
        'SELECT id FROM deliveries WHERE event_id = ANY($1::uuid[])',
        [events],
      );
      const seen = await pageAll(
        '/v1/deliveries',
        { endpointId: ep, limit: 3 },
        () => emit(type, { more: true }),
      );
      expect(duplicates(seen)).toEqual([]);
      expect(
        original
          .map((r: { id: string }) => r.id)
          .filter((id: string) => !seen.includes(id)),
      ).toEqual([]);
    });
  });

  describe('limit=100 over deliveries with thousands of attempts', () => {
    let deliveryId: string;
    let eventId: string;

    beforeAll(async () => {
      const type = `rt2.huge${Date.now()}`;
      await request(svc.url)
        .post('/v1/endpoints')
        .set(tenant.auth)
        .send({ url: receiver.url, eventTypes: [type] })
        .expect(201);
      eventId = await emit(type, { huge: true });
      const [d] = await eventually(async () => {
        const res: request.Response = await request(svc.url)
          .get(`/v1/events/${eventId}/deliveries`)
          .set(tenant.auth);
        return res.body.data?.[0]?.status === 'succeeded' && res.body.data;
      }, 'the delivery');
      deliveryId = d.id;
      // 5000 more recorded attempts (manual resends), each with a 4 kB response body.
      await svc.dataSource.query(
        `INSERT INTO delivery_attempts
           (delivery_id, number, trigger, status, started_at, finished_at, status_code, response_body)
         SELECT $1, n, 'manual', 'succeeded', now(), now(), 200, repeat('r', 4096)
           FROM generate_series(2, 5001) n`,
        [deliveryId],
      );
      await svc.dataSource.query(
        'UPDATE deliveries SET attempt_count = 5001 WHERE id = $1',
        [deliveryId],
      );
    });

    it('should page through every attempt once at limit=100', async () => {
      const started = Date.now();
      const ids = await pageAll(`/v1/deliveries/${deliveryId}/attempts`, {
        limit: 100,
      });
      expect(ids).toHaveLength(5001);
      expect(duplicates(ids)).toEqual([]);
      expect(Date.now() - started).toBeLessThan(20_000);
    });

    it('should return only the latest 50 attempts per delivery in an event’s deliveries', async () => {
      const res: request.Response = await request(svc.url)
        .get(`/v1/events/${eventId}/deliveries`)
        .query({ limit: 100 })
        .set(tenant.auth)
        .expect(200);
      const attempts = res.body.data[0].attempts;
      expect(attempts).toHaveLength(50);
      const numbers = attempts.map((a: { number: number }) => a.number);
      expect(Math.max(...numbers)).toBe(5001);
      expect(Math.min(...numbers)).toBe(4952);
    });
  });

  describe('a receiver that answers 200 only after the timeout', () => {
    it('should count the late answer as a failed attempt, retry, and succeed exactly once', async () => {
      const type = `rt2.slow${Date.now()}`;
      await request(svc.url)
        .post('/v1/endpoints')
        .set(tenant.auth)
        .send({ url: receiver.url, eventTypes: [type] })
        .expect(201);
      const eventId = await emit(type, { slow: true });
      const [d] = await eventually(
        async () => {
          const res: request.Response = await request(svc.url)
            .get(`/v1/events/${eventId}/deliveries`)
            .set(tenant.auth);
          const data = res.body.data ?? [];
          return data[0]?.status === 'succeeded' && data;
        },
        'success',
        20_000,
      );
      // Let the late answer arrive and anything it might cause settle.
      await new Promise((resolve) => setTimeout(resolve, 3500));
      const attempts = (
        await request(svc.url)
          .get(`/v1/deliveries/${d.id}/attempts`)
          .set(tenant.auth)
          .expect(200)
      ).body.data;
      const statuses = attempts.map(
        (a: { status: string; errorClass: string | null }) =>
          `${a.status}:${a.errorClass ?? ''}`,
      );
      expect(statuses).toEqual(['failed:timeout', 'succeeded:']);
      const final = (
        await request(svc.url)
          .get(`/v1/deliveries/${d.id}`)
          .set(tenant.auth)
          .expect(200)
      ).body;
      expect(final.status).toBe('succeeded');
    });
  });
});
