import type { Queue } from 'bull';
import request, { Response } from 'supertest';
import type { DataSource } from 'typeorm';
import {
  DELIVERY_QUEUE,
  DeliveryJob,
} from '../../src/deliveries/delivery-queue';
import { ADMIN_TOKEN, E2eApp, eventually } from './harness';

/** An account created through the API, with the header that authenticates as it. */
export interface Tenant {
  id: string;
  apiKey: string;
  auth: { authorization: string };
}

/** Creates an account through `POST /v1/accounts` (admin token). */
export async function createTenant(
  svc: Pick<E2eApp, 'url'>,
  name = 'tenant',
): Promise<Tenant> {
  const res = await request(svc.url)
    .post('/v1/accounts')
    .set('authorization', `Bearer ${ADMIN_TOKEN}`)
    .send({ name })
    .expect(201);
  return {
    id: res.body.id,
    apiKey: res.body.apiKey,
    auth: { authorization: `Bearer ${res.body.apiKey}` },
  };
}

let references = 0;

/** A valid `POST /v1/trips` body with a reference unique to this process. */
export function tripBody(overrides: Record<string, unknown> = {}) {
  references += 1;
  return {
    reference: `T-${process.pid}-${Date.now()}-${references}`,
    origin: 'Lyon',
    destination: 'Turin',
    plannedArrival: '2026-12-01T10:00:00Z',
    ...overrides,
  };
}

/** The `message` of an error response as one string (validation errors come as a list). */
export function messageOf(res: Response): string {
  const message: unknown = res.body?.message;
  return Array.isArray(message) ? message.join('; ') : String(message);
}

/** Polls the delivery log of an event until its deliveries all reached `status`. */
export async function deliveriesSettled(
  svc: E2eApp,
  tenant: Tenant,
  eventId: string,
  count = 1,
  status = 'succeeded',
): Promise<any[]> {
  return eventually(async () => {
    const res = await request(svc.url)
      .get(`/v1/events/${eventId}/deliveries`)
      .set(tenant.auth);
    const data: any[] = res.body.data ?? [];
    return (
      data.length === count && data.every((d) => d.status === status) && data
    );
  }, `${count} delivery(ies) of event ${eventId} to be ${status}`);
}

/**
 * Row counts and content digests of everything the accounts own, and of the accounts named
 * `accountNames`: equal before and after a request means the request changed nothing.
 * NOTE: scoped to known accounts and names, as other spec files may share the database.
 */
export async function fingerprint(
  dataSource: DataSource,
  accountIds: string[],
  accountNames: string[] = [],
): Promise<Record<string, string>> {
  const digest = (from: string, where: string) =>
    `(SELECT count(*) || ' rows ' || md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))
      FROM ${from} WHERE ${where})`;
  const [row] = await dataSource.query(
    `SELECT
       ${digest('accounts x', 'x.id = ANY($1::uuid[]) OR x.name = ANY($2::text[])')} AS accounts,
       ${digest('endpoints x', 'x.account_id = ANY($1::uuid[])')} AS endpoints,
       ${digest('trips x', 'x.account_id = ANY($1::uuid[])')} AS trips,
       ${digest(
         'trip_delays x JOIN trips t ON t.id = x.trip_id',
         't.account_id = ANY($1::uuid[])',
       )} AS trip_delays,
       ${digest('events x', 'x.account_id = ANY($1::uuid[])')} AS events,
       ${digest('deliveries x', 'x.account_id = ANY($1::uuid[])')} AS deliveries,
       ${digest(
         'delivery_attempts x JOIN deliveries d ON d.id = x.delivery_id',
         'd.account_id = ANY($1::uuid[])',
       )} AS delivery_attempts,
       ${digest(
         'idempotency_keys x',
         'x.account_id = ANY($1::text[])',
       )} AS idempotency_keys`,
    [accountIds, accountNames],
  );
  return row;
}

/**
 * Records the delivery jobs handed to the Bull queue (API after-commit, worker, reconciler)
 * and, when the queue is durable, written to the transactional outbox.
 */
export interface QueueWatch {
  /** Delivery ids of the jobs added to Bull since the watch started or was last reset. */
  deliveryIds(): string[];
  reset(): void;
  /**
   * Jobs added to Bull or the outbox since the last reset that concern `accountIds`: their
   * delivery belongs to one of them, or does not exist (it was rolled back: a leaked job).
   */
  jobsFor(dataSource: DataSource, accountIds: string[]): Promise<string[]>;
  stop(): void;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Delivery ids of the jobs written to the outbox (if there is one) since `since`. */
async function outboxDeliveryIds(
  dataSource: DataSource,
  since: Date,
): Promise<string[]> {
  const [{ present }] = await dataSource.query(
    `SELECT to_regclass('transactional_outbox') IS NOT NULL AS present`,
  );
  if (!present) return [];
  const rows: { id: string }[] = await dataSource.query(
    `SELECT data->>'deliveryId' AS id FROM transactional_outbox
     WHERE queue = $1 AND created_at >= $2`,
    [DELIVERY_QUEUE, since],
  );
  return rows.map((row) => row.id);
}

/** Watches `queue.add` / `queue.addBulk` (and the outbox) without changing what they do. */
export function watchQueue(queue: Queue<DeliveryJob>): QueueWatch {
  let seen: string[] = [];
  let since = new Date();
  const add = queue.add;
  const addBulk = queue.addBulk;
  queue.add = function (this: Queue<DeliveryJob>, ...args: any[]) {
    const data = typeof args[0] === 'string' ? args[1] : args[0];
    seen.push(data?.deliveryId);
    return (add as (...a: any[]) => any).apply(this, args);
  } as typeof queue.add;
  queue.addBulk = function (this: Queue<DeliveryJob>, jobs) {
    seen.push(...jobs.map((job) => job.data?.deliveryId));
    return addBulk.call(this, jobs);
  };
  return {
    deliveryIds: () => [...seen],
    reset: () => {
      seen = [];
      since = new Date();
    },
    async jobsFor(dataSource, accountIds) {
      const ids = [
        ...new Set([...seen, ...(await outboxDeliveryIds(dataSource, since))]),
      ].filter((id) => typeof id === 'string' && UUID.test(id));
      if (ids.length === 0) return [];
      const rows: { id: string; account_id: string }[] = await dataSource.query(
        'SELECT id, account_id FROM deliveries WHERE id = ANY($1::uuid[])',
        [ids],
      );
      return ids.filter((id) => {
        const row = rows.find((r) => r.id === id);
        return !row || accountIds.includes(row.account_id);
      });
    },
    stop: () => {
      queue.add = add;
      queue.addBulk = addBulk;
    },
  };
}
