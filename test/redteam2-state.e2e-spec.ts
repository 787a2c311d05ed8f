/**
 * Red team, round 2: state machines under concurrency. Secret rotation while deliveries are
 * sent, manual retries of deliveries that are sending or succeeded, recover racing with
 * itself, endpoints deleted with deliveries in flight or queued, and one Idempotency-Key
 * used by concurrent requests with different bodies.
 */
import type { ServerResponse } from 'http';
import request from 'supertest';
import { Webhook } from 'standardwebhooks';
import { Tenant, createTenant } from './support/api';
import {
  ADMIN_TOKEN,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import { Receiver, startReceiver } from './support/receiver';
import { claimDelivery } from '../src/deliveries/delivery-claims';
import { RetentionService } from '../src/retention/retention.service';

jest.setTimeout(120_000);

/** Ids of the receiver's requests (webhook-id is the event id). */
function webhookIds(receiver: Receiver, from = 0): string[] {
  return receiver.received
    .slice(from)
    .map((r) => String(r.headers['webhook-id']));
}

function verifiesWith(
  secrets: string[],
  r: Receiver['received'][number],
): boolean {
  return secrets.some((secret) => {
    try {
      new Webhook(secret).verify(r.body, r.headers as Record<string, string>);
      return true;
    } catch {
      return false;
    }
  });
}

describe('redteam2: state machines under concurrency', () => {
  let svc: E2eApp;
  let tenant: Tenant;

  beforeAll(async () => {
    svc = await startE2eApp();
    tenant = await createTenant(svc, 'rt2-state');
  });

  afterAll(async () => {
    await svc.close();
  });

  async function endpoint(url: string, eventTypes?: string[]) {
    const res = await request(svc.url)
      .post('/v1/endpoints')
      .set(tenant.auth)
      .send({ url, ...(eventTypes ? { eventTypes } : {}) })
      .expect(201);
    return res.body as { id: string; secret: string };
  }

  async function emit(type: string, payload: object = { n: 1 }) {
    const res = await request(svc.url)
      .post('/v1/events')
      .set(tenant.auth)
      .send({ type, payload })
      .expect(201);
    return res.body.id as string;
  }

  async function deliveriesOf(eventId: string): Promise<any[]> {
    const res = await request(svc.url)
      .get(`/v1/events/${eventId}/deliveries`)
      .set(tenant.auth)
      .expect(200);
    return res.body.data;
  }

  describe('rotate-secret', () => {
    it('should keep the first secret signing for 24 h after eleven rotations (README: old secret signs for 24 h more)', async () => {
      const receiver = await startReceiver();
      try {
        const ep = await endpoint(receiver.url, ['rt2.rotate11']);
        const first = ep.secret;
        for (let i = 0; i < 11; i++) {
          await request(svc.url)
            .post(`/v1/endpoints/${ep.id}/rotate-secret`)
            .set(tenant.auth)
            .expect(201);
        }
        const eventId = await emit('rt2.rotate11');
        await eventually(
          () => webhookIds(receiver).includes(eventId),
          'the delivery',
        );
        const got = receiver.received.find(
          (r) => r.headers['webhook-id'] === eventId,
        )!;
        // Rotated 11 times within a minute: the first secret was rotated out seconds ago.
        expect(verifiesWith([first], got)).toBe(true);
      } finally {
        await receiver.close();
      }
    });

    it('should sign every request with a secret active at send time while rotations race deliveries', async () => {
      const receiver = await startReceiver();
      try {
        const ep = await endpoint(receiver.url, ['rt2.rotrace']);
        const secrets = [ep.secret];
        const events: Promise<string>[] = [];
        const rotations: Promise<void>[] = [];
        for (let i = 0; i < 12; i++) {
          events.push(emit('rt2.rotrace', { i }));
          if (i % 3 === 0) {
            rotations.push(
              request(svc.url)
                .post(`/v1/endpoints/${ep.id}/rotate-secret`)
                .set(tenant.auth)
                .then((res) => {
                  expect(res.status).toBe(201);
                  secrets.push(res.body.secret);
                }),
            );
          }
        }
        const ids = await Promise.all(events);
        await Promise.all(rotations);
        await eventually(
          () => ids.every((id) => webhookIds(receiver).includes(id)),
          'all deliveries',
        );
        const unverified = receiver.received.filter(
          (r) => !verifiesWith(secrets, r),
        );
        expect(unverified.map((r) => r.headers['webhook-id'])).toEqual([]);
        // The current secret (the last rotation to commit) must be among the signatures of
        // a request sent afterwards.
        const current = (
          await request(svc.url)
            .get(`/v1/endpoints/${ep.id}/secret`)
            .set(tenant.auth)
            .expect(200)
        ).body.secret;
        const after = await emit('rt2.rotrace', { after: true });
        await eventually(
          () => webhookIds(receiver).includes(after),
          'the last delivery',
        );
        const last = receiver.received.find(
          (r) => r.headers['webhook-id'] === after,
        )!;
        expect(verifiesWith([current], last)).toBe(true);
      } finally {
        await receiver.close();
      }
    });
  });

  describe('manual retry', () => {
    it('should make the promised manual attempt when the delivery is sending at the time', async () => {
      const held: ServerResponse[] = [];
      const receiver = await startReceiver((n, _r, res) => {
        if (n === 0) held.push(res);
        else res.end('ok');
      });
      try {
        await endpoint(receiver.url, ['rt2.retrysending']);
        const eventId = await emit('rt2.retrysending');
        await eventually(() => held.length === 1, 'the first request');
        const [delivery] = await deliveriesOf(eventId);
        expect(delivery.status).toBe('sending');
        const retry = await request(svc.url)
          .post(`/v1/deliveries/${delivery.id}/retry`)
          .set(tenant.auth);
        expect(retry.status).toBeLessThan(300);
        expect(retry.body.queued).toBe(true);
        // Let the manual job run while the scheduled attempt still holds the lease.
        await new Promise((resolve) => setTimeout(resolve, 1000));
        held[0].end('ok');
        // The API said "queued": one manual attempt should follow (now or once the lease is free).
        await eventually(
          async () => {
            const [d] = await deliveriesOf(eventId);
            return d.attempts.some((a: any) => a.trigger === 'manual');
          },
          'a manual attempt to be recorded',
          8000,
        );
        expect(receiver.received.length).toBe(2);
      } finally {
        await receiver.close();
      }
    });

    it('should keep a succeeded delivery succeeded after a manual retry, with one more attempt', async () => {
      const receiver = await startReceiver();
      try {
        await endpoint(receiver.url, ['rt2.retrydone']);
        const eventId = await emit('rt2.retrydone');
        const [done] = await eventually(async () => {
          const data = await deliveriesOf(eventId);
          return data[0]?.status === 'succeeded' && data;
        }, 'success');
        await request(svc.url)
          .post(`/v1/deliveries/${done.id}/retry`)
          .set(tenant.auth)
          .expect((res) => expect(res.status).toBeLessThan(300));
        // NOTE: the attempt row exists from its claim on (status sending): wait for its outcome.
        const [after] = await eventually(async () => {
          const data = await deliveriesOf(eventId);
          return (
            data[0]?.attempts.length === 2 &&
            data[0].status !== 'sending' &&
            data
          );
        }, 'the outcome of the manual attempt');
        expect(after.status).toBe('succeeded');
        expect(receiver.received.length).toBe(2);
      } finally {
        await receiver.close();
      }
    });
  });

  describe('recover racing with itself', () => {
    it('should re-send each failed delivery once when two recover calls race', async () => {
      let healthy = false;
      const receiver = await startReceiver((_n, _r, res) => {
        res.statusCode = healthy ? 200 : 500;
        res.end(healthy ? 'ok' : 'down');
      });
      try {
        const ep = await endpoint(receiver.url, ['rt2.recover']);
        const since = new Date(Date.now() - 1000).toISOString();
        const ids = await Promise.all(
          [1, 2, 3].map((i) => emit('rt2.recover', { i })),
        );
        await eventually(
          async () => {
            const all = await Promise.all(ids.map(deliveriesOf));
            return all.every((d) => d[0]?.status === 'failed');
          },
          'every delivery to fail',
          20_000,
        );
        healthy = true;
        const from = receiver.received.length;
        const [r1, r2] = await Promise.all(
          [1, 2].map(() =>
            request(svc.url)
              .post(`/v1/endpoints/${ep.id}/recover`)
              .set(tenant.auth)
              .send({ since }),
          ),
        );
        expect([r1.status, r2.status].every((s) => s < 300)).toBe(true);
        await eventually(async () => {
          const all = await Promise.all(ids.map(deliveriesOf));
          return all.every((d) => d[0]?.status === 'succeeded');
        }, 'every delivery to succeed');
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const resent = webhookIds(receiver, from).sort();
        expect(resent).toEqual([...ids].sort());
      } finally {
        await receiver.close();
      }
    });
  });

  describe('deleting an endpoint', () => {
    it('should answer 204 at once while a delivery is in flight, and leave nothing unrecorded or stuck', async () => {
      const held: ServerResponse[] = [];
      const receiver = await startReceiver((_n, _r, res) => held.push(res));
      try {
        const health0 = (
          await request(svc.url)
            .get('/health')
            .set('authorization', `Bearer ${ADMIN_TOKEN}`)
        ).body;
        const ep = await endpoint(receiver.url, ['rt2.delinflight']);
        const eventId = await emit('rt2.delinflight');
        await eventually(() => held.length === 1, 'the request');
        const [delivery] = await deliveriesOf(eventId);
        const started = Date.now();
        const del = await request(svc.url)
          .delete(`/v1/endpoints/${ep.id}`)
          .set(tenant.auth);
        expect(del.status).toBe(204);
        expect(Date.now() - started).toBeLessThan(1500);
        held[0].end('ok');
        await new Promise((resolve) => setTimeout(resolve, 1000));
        await request(svc.url)
          .get(`/v1/deliveries/${delivery.id}`)
          .set(tenant.auth)
          .expect(404);
        const health1 = (
          await request(svc.url)
            .get('/health')
            .set('authorization', `Bearer ${ADMIN_TOKEN}`)
        ).body;
        expect(health1.deliveries).toEqual(health0.deliveries);
      } finally {
        await receiver.close();
      }
    });

    it('should drop the queued jobs of its pending deliveries, sending nothing more', async () => {
      const receiver = await startReceiver((_n, _r, res) => {
        res.statusCode = 503;
        res.end('later');
      });
      try {
        const statuses: number[] = [];
        const allIds: string[] = [];
        // Deletes while failed attempts are recorded and retries claimed (0/200/400/600 ms).
        for (let round = 0; round < 12; round++) {
          const ep = await endpoint(receiver.url, [`rt2.delqueued${round}`]);
          const ids = await Promise.all(
            Array.from({ length: 8 }, (_, i) =>
              emit(`rt2.delqueued${round}`, { i }),
            ),
          );
          allIds.push(...ids);
          await eventually(
            () => ids.some((id) => webhookIds(receiver).includes(id)),
            'a first attempt',
          );
          await new Promise((resolve) => setTimeout(resolve, 40 * round));
          const del = await request(svc.url)
            .delete(`/v1/endpoints/${ep.id}`)
            .set(tenant.auth);
          statuses.push(del.status);
          if (del.status !== 204) {
            // Clean up for the checks below; the delete itself is the finding.
            await request(svc.url)
              .delete(`/v1/endpoints/${ep.id}`)
              .set(tenant.auth);
          }
        }
        expect(statuses).toEqual(statuses.map(() => 204));
        const count = receiver.received.length;
        await new Promise((resolve) => setTimeout(resolve, 2500));
        expect(receiver.received.length).toBe(count);
        const rows = await svc.dataSource.query(
          'SELECT count(*)::int AS n FROM deliveries WHERE event_id = ANY($1::uuid[])',
          [allIds],
        );
        expect(rows[0].n).toBe(0);
      } finally {
        await receiver.close();
      }
    });
  });

  describe('retention racing with a claim', () => {
    it('should not delete an expired event whose delivery a worker is claiming (README: never while a delivery is in flight)', async () => {
      const receiver = await startReceiver((_n, _r, res) => {
        res.statusCode = 500;
        res.end('down');
      });
      try {
        await endpoint(receiver.url, ['rt2.retention']);
        const eventId = await emit('rt2.retention');
        const [failed] = await eventually(
          async () => {
            const data = await deliveriesOf(eventId);
            return data[0]?.status === 'failed' && data;
          },
          'the delivery to fail',
          20_000,
        );
        await svc.dataSource.query(
          `UPDATE events SET created_at = now() - interval '31 days' WHERE id = $1`,
          [eventId],
        );
        const retention = svc.app.get(RetentionService);
        let run: Promise<unknown> | undefined;
        // A manual retry's claim (the worker's own code), interleaved with a retention run:
        // the claim's transaction has marked the delivery sending when retention looks.
        await svc.dataSource.transaction(async (m) => {
          const claimed = await claimDelivery(
            m,
            failed.id,
            'manual',
            12_000,
            4,
          );
          expect(claimed.kind).toBe('claimed');
          run = retention.runOnce();
          await new Promise((resolve) => setTimeout(resolve, 300));
        });
        await run;
        const rows = await svc.dataSource.query(
          'SELECT d.status FROM deliveries d WHERE d.id = $1',
          [failed.id],
        );
        // The delivery is now sending (an attempt in flight): it must still exist.
        expect(rows).toEqual([{ status: 'sending' }]);
      } finally {
        await receiver.close();
      }
    });
  });

  describe('one Idempotency-Key, concurrent requests with different bodies', () => {
    it('should create exactly one endpoint and refuse the others with a JSON 4xx', async () => {
      const receiver = await startReceiver();
      try {
        const key = `rt2-race-${Date.now()}`;
        const before = await svc.dataSource.query(
          'SELECT count(*)::int AS n FROM endpoints WHERE account_id = $1',
          [tenant.id],
        );
        const results = await Promise.all(
          Array.from({ length: 6 }, (_, i) =>
            request(svc.url)
              .post('/v1/endpoints')
              .set(tenant.auth)
              .set('idempotency-key', key)
              .send({ url: receiver.url, description: `body ${i}` }),
          ),
        );
        const statuses = results.map((r) => r.status).sort();
        expect(statuses.filter((s) => s === 201)).toHaveLength(1);
        for (const r of results.filter((x) => x.status !== 201)) {
          expect([409, 422]).toContain(r.status);
          expect(r.headers['content-type']).toMatch(/json/);
        }
        const after = await svc.dataSource.query(
          'SELECT count(*)::int AS n FROM endpoints WHERE account_id = $1',
          [tenant.id],
        );
        expect(after[0].n).toBe(before[0].n + 1);
      } finally {
        await receiver.close();
      }
    });

    it('should replay one answer to concurrent requests with the same key and body', async () => {
      const receiver = await startReceiver();
      try {
        const key = `rt2-same-${Date.now()}`;
        const results = await Promise.all(
          Array.from({ length: 5 }, () =>
            request(svc.url)
              .post('/v1/endpoints')
              .set(tenant.auth)
              .set('idempotency-key', key)
              .send({ url: receiver.url, description: 'same' }),
          ),
        );
        for (const r of results) expect(r.status).toBe(201);
        expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
        expect(new Set(results.map((r) => r.body.secret)).size).toBe(1);
      } finally {
        await receiver.close();
      }
    });
  });
});
