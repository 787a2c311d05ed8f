/**
 * Adversarial (round 5): `GET /v1/events/:id/deliveries` inlines, for each delivery of the page
 * (up to `limit`, 50 by default, 100 at most), its latest 50 attempts with their stored
 * responses, each up to 64 KiB. Nothing bounded the page in bytes: a tenant whose receiver
 * answers 64 KiB of control characters (JSON writes each as `\u0001`, 6 bytes) and who asks
 * for manual resends (unlimited: each `POST .../retry` is one more attempt) builds an event whose
 * first page is over 500 million characters of JSON: more than V8 can hold in one string, so the
 * answer is a 500 after the API process has read ~100 MB from Postgres and grown by ~1 GB.
 * With `limit=5` the same event answers ~100 MB.
 *
 * A page may hold fewer than `limit` items (its `nextCursor` says where to go on): the log must
 * be readable page by page, every delivery once, each with its 50 latest attempts in full.
 */
import request from 'supertest';
import { Tenant, createTenant } from './support/api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

const ENDPOINTS = 30;
const INLINE = 50;
const RESPONSE = Buffer.alloc(64 * 1024, 1); // 64 KiB of U+0001

describe('adversarial5: an event’s delivery log page is bounded in bytes', () => {
  let svc: E2eApp;
  let t: Tenant;
  let receiver: Receiver;

  beforeAll(async () => {
    svc = await startE2eApp();
    t = await createTenant(svc, 'adv5-page-bytes');
    receiver = await startReceiver((_n, _r, res) => {
      res.statusCode = 500;
      res.end(RESPONSE);
    });
  });

  afterAll(async () => {
    await receiver?.close();
    await svc?.close();
  });

  it('should page through 30 deliveries with 50 attempts of 64 KiB each, never a 500', async () => {
    for (let i = 0; i < ENDPOINTS; i++) {
      await request(svc.url)
        .post('/v1/endpoints')
        .set(t.auth)
        .send({ url: receiver.url })
        .expect(201);
    }
    const event = (
      await request(svc.url)
        .post('/v1/events')
        .set(t.auth)
        .send({ type: 'adv5.bytes', payload: {} })
        .expect(201)
    ).body;
    expect(event.deliveries).toBe(ENDPOINTS);
    // The retry schedule (4 attempts in e2e) fails every delivery...
    const deliveries: { id: string }[] = await eventually(async () => {
      const rows = await svc.dataSource.query(
        `SELECT id FROM deliveries WHERE event_id = $1 AND status = 'failed'`,
        [event.id],
      );
      return rows.length === ENDPOINTS && rows;
    }, 'every delivery to fail');
    // ...and each gets 50 attempts: copies of its last recorded one (a manual resend per
    // attempt, as a tenant would build it, takes minutes on a busy machine; the read path is the
    // subject here).
    await svc.dataSource.query(
      `INSERT INTO delivery_attempts (delivery_id, number, trigger, status, status_code,
              duration_ms, error_class, error_message, response_body, response_truncated,
              started_at, finished_at)
       SELECT a.delivery_id, n, a.trigger, a.status, a.status_code, a.duration_ms,
              a.error_class, a.error_message, a.response_body, a.response_truncated,
              a.started_at, a.finished_at
         FROM (SELECT DISTINCT ON (delivery_id) * FROM delivery_attempts
                WHERE delivery_id = ANY($1) ORDER BY delivery_id, number DESC) a,
              generate_series(a.number + 1, $2) n`,
      [deliveries.map((d) => d.id), INLINE],
    );
    const [{ n }] = await svc.dataSource.query(
      `SELECT count(*)::int AS n FROM delivery_attempts a
         JOIN deliveries d ON d.id = a.delivery_id
        WHERE d.event_id = $1 AND a.status = 'failed' AND length(a.response_body) = $2`,
      [event.id, RESPONSE.length],
    );
    expect(n).toBe(ENDPOINTS * INLINE);

    const seen = new Map<string, { attempts: number; full: boolean }>();
    const statuses: number[] = [];
    let cursor: string | null = null;
    do {
      const res: request.Response = await request(svc.url)
        .get(`/v1/events/${event.id}/deliveries`)
        .query(cursor ? { cursor } : {})
        .set(t.auth);
      statuses.push(res.status);
      if (res.status !== 200) break;
      for (const d of res.body.data) {
        expect(seen.has(d.id)).toBe(false);
        seen.set(d.id, {
          attempts: d.attempts.length,
          full: d.attempts.every(
            (a: { responseBody: string }) =>
              a.responseBody === RESPONSE.toString(),
          ),
        });
      }
      cursor = res.body.nextCursor;
    } while (cursor && statuses.length < ENDPOINTS + 1);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect([...seen.keys()].sort()).toEqual(deliveries.map((d) => d.id).sort());
    expect([...seen.values()]).toEqual(
      deliveries.map(() => ({ attempts: INLINE, full: true })),
    );
  }, 300_000);
});
