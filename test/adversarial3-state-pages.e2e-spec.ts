/**
 * Adversarial, round 3 (state and concurrency): idempotency keys raced on one trip, and list
 * cursors while rows are being added, through the HTTP API.
 */
import fc from 'fast-check';
import { Client } from 'pg';
import request, { Response } from 'supertest';
import { Tenant, createTenant, tripBody } from './support/api';
import {
  E2eApp,
  e2eDatabaseUrl,
  eventually,
  startE2eApp,
} from './support/harness';
import { failOnProcessCrashes } from './support/process-crashes';

jest.setTimeout(90_000);

describe('adversarial3 state: idempotency races and cursors under inserts', () => {
  failOnProcessCrashes();
  let svc: E2eApp;
  let tenant: Tenant;

  beforeAll(async () => {
    svc = await startE2eApp();
    tenant = await createTenant(svc, 'adv3-state-pages');
  });

  afterAll(async () => {
    await svc?.close();
  });

  const api = () => request(svc.url);

  async function newTrip(t: Tenant = tenant): Promise<string> {
    const res = await api()
      .post('/v1/trips')
      .set(t.auth)
      .send(tripBody())
      .expect(201);
    return res.body.id;
  }

  it('should give each key one delay and byte-identical answers when keys race on one trip', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            minutes: fc.integer({ min: 1, max: 600 }),
            copies: fc.integer({ min: 1, max: 4 }),
          }),
          { minLength: 1, maxLength: 5 },
        ),
        async (keys) => {
          run += 1;
          const tripId = await newTrip();
          const sends = keys.flatMap(({ minutes, copies }, k) =>
            Array.from({ length: copies }, () => ({
              k,
              send: () =>
                api()
                  .post(`/v1/trips/${tripId}/delays`)
                  .set(tenant.auth)
                  .set('idempotency-key', `adv3-${tripId}-${run}-${k}`)
                  .send({ minutes, reason: `key ${k} \u{1F69A}\u200D` }),
            })),
          );
          // Shuffled by fast-check's own order (interleaved keys), all at once.
          const answers = await Promise.all(
            sends.map(async ({ k, send }) => ({ k, res: await send() })),
          );
          for (const { res } of answers) expect(res.status).toBe(201);
          for (let k = 0; k < keys.length; k++) {
            const mine = answers.filter((x) => x.k === k).map((x) => x.res);
            expect(new Set(mine.map((r) => r.text)).size).toBe(1);
            expect(
              mine.filter((r) => r.headers['idempotent-replayed'] !== 'true'),
            ).toHaveLength(1);
          }
          const total = keys.reduce((s, x) => s + x.minutes, 0);
          const trip = (
            await api().get(`/v1/trips/${tripId}`).set(tenant.auth).expect(200)
          ).body;
          expect(trip.delayMinutesTotal).toBe(total);
          const events = await api()
            .get('/v1/events')
            .query({ tripId, type: 'trip.delayed', limit: 100 })
            .set(tenant.auth)
            .expect(200);
          expect(events.body.data).toHaveLength(keys.length);
          // A replay afterwards is byte for byte the first answer.
          const again = await sends[0].send().expect(201);
          expect(again.text).toBe(
            answers.find((x) => x.k === sends[0].k)!.res.text,
          );
        },
      ),
      { numRuns: 12 },
    );
  });

  it('should refuse a key reused on another trip or route with 422, changing nothing', async () => {
    const [t1, t2] = [await newTrip(), await newTrip()];
    const key = `adv3-cross-${t1}`;
    const first = await api()
      .post(`/v1/trips/${t1}/delays`)
      .set(tenant.auth)
      .set('idempotency-key', key)
      .send({ minutes: 5, reason: 'fog' })
      .expect(201);
    const reuse = await Promise.all([
      api()
        .post(`/v1/trips/${t2}/delays`)
        .set(tenant.auth)
        .set('idempotency-key', key)
        .send({ minutes: 5, reason: 'fog' }),
      api()
        .post(`/v1/trips/${t1}/arrival`)
        .set(tenant.auth)
        .set('idempotency-key', key)
        .send(),
    ]);
    for (const r of reuse) expect(r.status).toBe(422);
    for (const id of [t1, t2]) {
      const trip = (
        await api().get(`/v1/trips/${id}`).set(tenant.auth).expect(200)
      ).body;
      expect(trip.status).toBe(id === t1 ? 'delayed' : 'scheduled');
      expect(trip.delayMinutesTotal).toBe(id === t1 ? 5 : 0);
    }
    const replay = await api()
      .post(`/v1/trips/${t1}/delays`)
      .set(tenant.auth)
      .set('idempotency-key', key)
      .send({ minutes: 5, reason: 'fog' })
      .expect(201);
    expect(replay.text).toBe(first.text);
  });

  /** Every page of `path` for `query`, `limit` at a time, calling `between` between pages. */
  async function walk(
    path: string,
    query: Record<string, string | number>,
    limit: number,
    between: (page: number) => Promise<void>,
  ): Promise<any[]> {
    const all: any[] = [];
    let cursor: string | null = null;
    let page = 0;
    do {
      const res: Response = await api()
        .get(path)
        .query({ ...query, limit, ...(cursor ? { cursor } : {}) })
        .set(tenant.auth)
        .expect(200);
      all.push(...res.body.data);
      cursor = res.body.nextCursor;
      if (cursor) await between(page++);
    } while (cursor);
    return all;
  }

  it('should page events newest first, each existing one once, while events are added (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 3, max: 12 }),
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 12 }),
        async (initial, limit, inserts) => {
          const type = `adv3.page.${Date.now()}.${Math.random()}`;
          const publish = () =>
            api()
              .post('/v1/events')
              .set(tenant.auth)
              .send({ type, payload: {} })
              .expect(201)
              .then((r) => r.body.id as string);
          const existing: string[] = [];
          for (let i = 0; i < initial; i++) existing.push(await publish());
          const added: string[] = [];
          const seen = await walk('/v1/events', { type }, limit, async (p) => {
            const n = inserts[p] ?? 0;
            added.push(
              ...(await Promise.all(Array.from({ length: n }, publish))),
            );
          });
          const ids = seen.map((e) => e.id);
          expect(new Set(ids).size).toBe(ids.length);
          // Everything that existed when the walk began is listed, newest first.
          expect(ids.filter((id) => existing.includes(id))).toEqual(
            [...existing].reverse(),
          );
          // Events added during the walk are newer than every page already read.
          expect(ids.filter((id) => added.includes(id))).toEqual([]);
        },
      ),
      { numRuns: 15 },
    );
  });

  it('should not shift the next page with an event committed between two pages (newest first)', async () => {
    // A delay that is slow to commit (here: it waits for the trip's row, as it would behind a
    // concurrent delay or arrival of the same trip) must not land inside pages already read.
    const tripId = await newTrip();
    const type = `adv3.shift.${tripId.replace(/-/g, '_')}`;
    const db = new Client({ connectionString: e2eDatabaseUrl() });
    await db.connect();
    try {
      await db.query('BEGIN');
      await db.query('SELECT 1 FROM trips WHERE id = $1 FOR UPDATE', [tripId]);
      const slow = api()
        .post(`/v1/trips/${tripId}/delays`)
        .set(tenant.auth)
        .send({ minutes: 9, reason: 'behind another request' })
        .then((r) => r);
      // The delay's transaction has begun and waits for the row.
      await eventually(async () => {
        const rows = await svc.dataSource.query(
          `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'
             AND query LIKE '%INSERT INTO trip_delays%'`,
        );
        return rows.length > 0;
      }, 'the delay to wait for the trip row');
      for (let i = 0; i < 3; i++)
        await api()
          .post('/v1/events')
          .set(tenant.auth)
          .send({ type, payload: { i } })
          .expect(201);
      // Page 1 of the account's events, newest first: the three just published.
      const page1 = await api()
        .get('/v1/events')
        .query({ limit: 2 })
        .set(tenant.auth)
        .expect(200);
      expect(page1.body.data.map((e: any) => e.type)).toEqual([type, type]);
      await db.query('COMMIT');
      const delayed = await slow;
      expect(delayed.status).toBe(201);
      const page2 = await api()
        .get('/v1/events')
        .query({ limit: 2, cursor: page1.body.nextCursor })
        .set(tenant.auth)
        .expect(200);
      // The next page goes on where page 1 stopped: the third event, then older ones.
      expect({
        first: page2.body.data[0].type,
        delayEventOnPage2: page2.body.data.some(
          (e: any) => e.id === delayed.body.event.id,
        ),
      }).toEqual({ first: type, delayEventOnPage2: false });
    } finally {
      await db.query('ROLLBACK').catch(() => undefined);
      await db.end();
    }
  });
});
