import { randomUUID } from 'crypto';
import request from 'supertest';
import { RetentionService } from '../src/retention/retention.service';
import { Tenant, createTenant } from './support/api';
import { deliveryApi } from './support/delivery-api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

describe('when data outlives its retention', () => {
  let svc: E2eApp;
  let receiver: Receiver;
  let tenant: Tenant;

  beforeAll(async () => {
    svc = await startE2eApp({ retentionBatchSize: 2 });
    receiver = await startReceiver();
    tenant = await createTenant(svc, 'retention');
  });

  afterAll(async () => {
    await receiver?.close();
    await svc?.close();
  });

  const q = (sql: string, params: unknown[] = []) =>
    svc.dataSource.query(sql, params);
  const count = async (sql: string, params: unknown[]) =>
    (await q(`SELECT count(*)::int AS n FROM ${sql}`, params))[0].n as number;

  it('should delete old events, attempts and keys in small batches, and keep the rest', async () => {
    const client = deliveryApi(svc, tenant.apiKey);
    await client.createEndpoint(receiver.url);
    const events: string[] = [];
    for (let i = 0; i < 7; i++) {
      events.push((await client.publish('parcel.scanned', { i })).id);
    }
    for (const id of events) {
      await client.deliveryWhen(
        id,
        (d) => d.status === 'succeeded',
        'the delivery to succeed',
      );
    }
    const [old1, old2, old3, old4, inFlight, oldAttempts, fresh] = events;
    const oldEvents = [old1, old2, old3, old4];
    await q(
      `UPDATE events SET created_at = now() - interval '31 days' WHERE id = ANY($1::uuid[])`,
      [[...oldEvents, inFlight]],
    );
    // An old event whose delivery is still in flight is kept until it is final.
    await q(
      `UPDATE deliveries SET status = 'pending', next_attempt_at = now() + interval '1 day'
        WHERE event_id = $1`,
      [inFlight],
    );
    await q(
      `UPDATE delivery_attempts a SET started_at = now() - interval '91 days'
         FROM deliveries d WHERE d.id = a.delivery_id AND d.event_id = $1`,
      [oldAttempts],
    );
    const keys = Array.from({ length: 5 }, () => `retention-${randomUUID()}`);
    for (const key of keys) {
      await request(svc.url)
        .post('/v1/events')
        .set(tenant.auth)
        .set('idempotency-key', key)
        .send({ type: 'parcel.keyed', payload: {} })
        .expect(201);
    }
    await q(
      `UPDATE idempotency_keys SET created_at = now() - interval '25 hours'
        WHERE key = ANY($1::text[])`,
      [keys.slice(0, 3)],
    );

    const result = await svc.app.get(RetentionService).runOnce();

    expect(result.events).toBeGreaterThanOrEqual(4);
    expect(result.attempts).toBeGreaterThanOrEqual(1);
    expect(result.idempotencyKeys).toBeGreaterThanOrEqual(3);
    // Batches of 2: four old events alone take at least two statements.
    expect(result.batches).toBeGreaterThanOrEqual(2 + 1 + 2);
    expect(await count('events WHERE id = ANY($1::uuid[])', [oldEvents])).toBe(
      0,
    );
    expect(
      await count('deliveries WHERE event_id = ANY($1::uuid[])', [oldEvents]),
    ).toBe(0);
    expect(await count('events WHERE id = ANY($1::uuid[])', [events])).toBe(3);
    expect(await count('deliveries WHERE event_id = $1', [inFlight])).toBe(1);
    expect(await count('deliveries WHERE event_id = $1', [oldAttempts])).toBe(
      1,
    );
    expect(
      await count(
        'delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.event_id = $1',
        [oldAttempts],
      ),
    ).toBe(0);
    expect(
      await count(
        'delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id WHERE d.event_id = $1',
        [fresh],
      ),
    ).toBe(1);
    expect(
      await count('idempotency_keys WHERE key = ANY($1::text[])', [keys]),
    ).toBe(2);
  });

  it('should skip rows another transaction holds instead of waiting for them', async () => {
    const client = deliveryApi(svc, tenant.apiKey);
    const event = await client.publish('parcel.held', {});
    await eventually(async () => {
      const [row] = await q(
        `SELECT count(*)::int AS busy FROM deliveries
          WHERE event_id = $1 AND status IN ('pending', 'sending')`,
        [event.id],
      );
      return row.busy === 0;
    }, 'the delivery to be final');
    await q(
      `UPDATE events SET created_at = now() - interval '31 days' WHERE id = $1`,
      [event.id],
    );
    const holder = svc.dataSource.createQueryRunner();
    await holder.connect();
    await holder.startTransaction();
    try {
      await holder.query('SELECT id FROM events WHERE id = $1 FOR UPDATE', [
        event.id,
      ]);
      const started = Date.now();
      await svc.app.get(RetentionService).runOnce();
      // Not waiting for the lock: well under the 1 s lock timeout, let alone a stall.
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(await count('events WHERE id = $1', [event.id])).toBe(1);
    } finally {
      await holder.commitTransaction();
      await holder.release();
    }
    await svc.app.get(RetentionService).runOnce();
    expect(await count('events WHERE id = $1', [event.id])).toBe(0);
  });
});
