/**
 * Adversarial (round 5): a webhook URL's host is resolved (the SSRF check, webhook-url-validator)
 * while `POST /v1/endpoints` and `PATCH /v1/endpoints/:id` hold a transaction: a pooled Postgres
 * connection, and for PATCH the endpoint's row lock (FOR UPDATE). How long a name takes to resolve
 * is up to whoever runs its DNS server: a tenant's own name server can answer as slowly as the
 * resolver waits (seconds, per lookup). Meanwhile:
 * - connections: enough creations at once hold every connection of the pool, and the service
 *   stops answering every other tenant;
 * - the row lock: the tenant's own events and delays wait for it (publishing takes the endpoint's
 *   key-share lock), and so does every delivery claim of the endpoint: worker slots stuck in those
 *   claims stop the deliveries of every other tenant.
 *
 * A slow name server is simulated by holding the answer for one host name (dns.promises.lookup,
 * which the validator calls) until the test lets it go. The assertions wait generously (10 s):
 * what fails them is waiting for a DNS answer, not a slow machine.
 */
import request from 'supertest';
import { createTenant, tripBody } from './support/api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const dnsPromises: typeof import('node:dns/promises') = require('node:dns/promises');

/** A host name whose lookups wait until `release()`; then it resolves to 127.0.0.1. */
interface SlowHost {
  name: string;
  /** Lookups started for it so far. */
  entered: number;
  release(): void;
}

const slowHosts = new Map<string, SlowHost>();

function slowHost(name: string): SlowHost {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const host: SlowHost = {
    name,
    entered: 0,
    release: () => open(),
  };
  (host as SlowHost & { gate: Promise<void> }).gate = gate;
  slowHosts.set(name, host);
  return host;
}

const originalLookup = dnsPromises.lookup;

/** What `p` settled with within `ms`, or 'still waiting'. */
async function within<T>(
  p: Promise<T>,
  ms: number,
): Promise<T | 'still waiting'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'still waiting'>((resolve) => {
    timer = setTimeout(() => resolve('still waiting'), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe('adversarial5: slow DNS answers while an endpoint request holds Postgres', () => {
  let svc: E2eApp;
  let receiver: Receiver;

  beforeAll(async () => {
    (dnsPromises as { lookup: unknown }).lookup = async (
      hostname: string,
      options?: unknown,
    ) => {
      const slow = slowHosts.get(hostname) as
        | (SlowHost & { gate: Promise<void> })
        | undefined;
      if (!slow) return (originalLookup as any)(hostname, options);
      slow.entered++;
      await slow.gate;
      return [{ address: '127.0.0.1', family: 4 }];
    };
    // NOTE: the default pool (WORKER_CONCURRENCY + 20 = 40) and worker concurrency (20).
    svc = await startE2eApp();
    receiver = await startReceiver();
  });

  afterAll(async () => {
    for (const host of slowHosts.values()) host.release();
    (dnsPromises as { lookup: unknown }).lookup = originalLookup;
    await receiver?.close();
    await svc?.close();
  });

  it('should keep answering tenant B while tenant A creates endpoints on a slowly resolving host', async () => {
    const a = await createTenant(svc, 'adv5-dns-a');
    const b = await createTenant(svc, 'adv5-dns-b');
    // B's key is now in the API's account cache: B needs no connection to authenticate.
    await request(svc.url).get('/v1/endpoints').set(b.auth).expect(200);

    const pool = (svc.dataSource.driver as any).master.options.max as number;
    const host = slowHost('slow-create.adv5.test');
    const creations = Array.from({ length: pool + 5 }, (_, i) =>
      request(svc.url)
        .post('/v1/endpoints')
        .set(a.auth)
        .send({ url: `http://${host.name}:${10_000 + i}/hook` })
        .then((res) => res.status),
    );
    try {
      // Every connection of the pool is held by one of A's creations (or none is, once fixed).
      await eventually(
        () => host.entered >= pool,
        `${pool} lookups of ${host.name}`,
      );
      const answer = await within(
        request(svc.url)
          .get('/v1/endpoints')
          .set(b.auth)
          .then((res) => ({ status: res.status, data: res.body.data })),
        10_000,
      );
      expect(answer).toEqual({ status: 200, data: [] });
    } finally {
      host.release();
    }
    expect(await Promise.all(creations)).toEqual(creations.map(() => 201));
    const [{ n }] = await svc.dataSource.query(
      'SELECT count(*)::int AS n FROM endpoints WHERE account_id = $1',
      [a.id],
    );
    expect(n).toBe(pool + 5);
  });

  it('should take tenant A’s delay while a PATCH of A’s endpoint waits for DNS', async () => {
    const a = await createTenant(svc, 'adv5-dns-patch');
    const endpoint = (
      await request(svc.url)
        .post('/v1/endpoints')
        .set(a.auth)
        .send({ url: receiver.url })
        .expect(201)
    ).body;
    const trip = (
      await request(svc.url)
        .post('/v1/trips')
        .set(a.auth)
        .send(tripBody())
        .expect(201)
    ).body;
    const host = slowHost('slow-patch.adv5.test');
    const patch = request(svc.url)
      .patch(`/v1/endpoints/${endpoint.id}`)
      .set(a.auth)
      .send({ url: `http://${host.name}:1/hook` })
      .then((res) => res.status);
    let delay;
    try {
      await eventually(() => host.entered >= 1, `a lookup of ${host.name}`);
      delay = await within(
        request(svc.url)
          .post(`/v1/trips/${trip.id}/delays`)
          .set(a.auth)
          .send({ minutes: 15, reason: 'adv5 dns' })
          .then((res) => ({
            status: res.status,
            delayMinutesTotal: res.body.trip?.delayMinutesTotal,
            deliveries: res.body.event?.deliveries,
          })),
        10_000,
      );
    } finally {
      host.release();
    }
    expect(delay).toEqual({
      status: 201,
      delayMinutesTotal: 15,
      deliveries: 1,
    });
    expect(await patch).toBe(200);
    const [row] = await svc.dataSource.query(
      'SELECT delay_minutes_total FROM trips WHERE id = $1',
      [trip.id],
    );
    expect(row.delay_minutes_total).toBe(15);
  });

  it('should keep delivering tenant B’s webhooks while tenant A’s PATCHes wait for DNS', async () => {
    const a = await createTenant(svc, 'adv5-dns-worker-a');
    const b = await createTenant(svc, 'adv5-dns-worker-b');
    const aReceiver = await startReceiver();
    const bReceiver = await startReceiver();
    const host = slowHost('slow-worker.adv5.test');
    try {
      // 5 endpoints x 4 slots (PER_ENDPOINT_CONCURRENCY) = the 20 jobs a worker runs at once.
      const endpoints: string[] = [];
      for (let i = 0; i < 5; i++) {
        const res = await request(svc.url)
          .post('/v1/endpoints')
          .set(a.auth)
          .send({ url: aReceiver.url })
          .expect(201);
        endpoints.push(res.body.id);
      }
      await request(svc.url)
        .post('/v1/endpoints')
        .set(b.auth)
        .send({ url: bReceiver.url })
        .expect(201);
      const seed = await request(svc.url)
        .post('/v1/events')
        .set(a.auth)
        .send({ type: 'adv5.seed', payload: {} })
        .expect(201);
      const deliveries: { id: string }[] = await eventually(async () => {
        const rows: { id: string; status: string }[] =
          await svc.dataSource.query(
            'SELECT id, status FROM deliveries WHERE event_id = $1',
            [seed.body.id],
          );
        return (
          rows.length === 5 &&
          rows.every((r) => r.status === 'succeeded') &&
          rows
        );
      }, 'A’s five deliveries to succeed');

      // A moves each endpoint to a host whose name server takes its time...
      const patches = endpoints.map((id) =>
        request(svc.url)
          .patch(`/v1/endpoints/${id}`)
          .set(a.auth)
          .send({ url: `http://${host.name}:1/hook` })
          .then((res) => res.status),
      );
      await eventually(() => host.entered >= 5, `5 lookups of ${host.name}`);
      // ...and asks for a manual resend of each delivery, four times.
      const retries: number[] = [];
      for (const { id } of deliveries) {
        for (let i = 0; i < 4; i++) {
          const res = await request(svc.url)
            .post(`/v1/deliveries/${id}/retry`)
            .set(a.auth);
          retries.push(res.status);
        }
      }
      expect(retries).toEqual(retries.map(() => 202));
      // Either the 20 resends are sent (to the old URL), or their claims wait on the locks.
      await eventually(async () => {
        const [{ waiting }] = await svc.dataSource.query(
          `SELECT count(*)::int AS waiting FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'`,
        );
        return waiting >= 20 || aReceiver.received.length >= 25;
      }, 'A’s resends to be sent or stuck');

      const event = await request(svc.url)
        .post('/v1/events')
        .set(b.auth)
        .send({ type: 'adv5.b', payload: { n: 1 } })
        .expect(201);
      expect(event.body.deliveries).toBe(1);
      const delivered = await within(
        eventually(
          () => bReceiver.received.length >= 1,
          'B’s webhook',
          10_000,
        ).then(() => 'delivered'),
        10_500,
      ).catch((error: Error) => error.message);
      host.release();
      expect(delivered).toBe('delivered');
      expect(await Promise.all(patches)).toEqual([200, 200, 200, 200, 200]);
      const [row] = await svc.dataSource.query(
        'SELECT status FROM deliveries WHERE event_id = $1',
        [event.body.id],
      );
      expect(row.status).toBe('succeeded');
    } finally {
      host.release();
      await aReceiver.close();
      await bReceiver.close();
    }
  });
});
