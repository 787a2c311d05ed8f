/**
 * Adversarial, round 3 (state and concurrency): recover windows, recover against a deleted
 * endpoint, and another account's ids on the delivery routes, through the HTTP API.
 */
import request from 'supertest';
import { Tenant, createTenant, fingerprint, watchQueue } from './support/api';
import { deliveryApi, holdsFor } from './support/delivery-api';
import { E2eApp, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';
import { failOnProcessCrashes } from './support/process-crashes';

/** The path a supertest response was requested with (`req` is missing from its types). */
const pathOf = (res: unknown) => (res as { req: { path: string } }).req.path;

jest.setTimeout(90_000);

/** The exact (microsecond) creation time of a delivery, as the list cursors spell it. */
async function createdAtUs(svc: E2eApp, deliveryId: string): Promise<string> {
  const [row] = await svc.dataSource.query(
    `SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at
       FROM deliveries WHERE id = $1`,
    [deliveryId],
  );
  return row.at;
}

/** `at` (YYYY-MM-DDTHH:MM:SS.ffffffZ) plus `us` microseconds, in the same spelling. */
function plusUs(at: string, us: number): string {
  const ms = Date.parse(at.slice(0, 23) + 'Z');
  const total = Number(at.slice(23, 26)) + us;
  const carryMs = Math.floor(total / 1000);
  const iso = new Date(ms + carryMs).toISOString().slice(0, 23);
  return `${iso}${String(total % 1000).padStart(3, '0')}Z`;
}

describe('adversarial3 state: recover and foreign ids', () => {
  failOnProcessCrashes();
  let svc: E2eApp;
  let a: Tenant;
  let b: Tenant;
  let failing: Receiver;
  let ok: Receiver;

  beforeAll(async () => {
    svc = await startE2eApp();
    failing = await startReceiver((_n, _r, res) => {
      res.statusCode = 500;
      res.end('no');
    });
    ok = await startReceiver();
    a = await createTenant(svc, 'adv3-recover-a');
    b = await createTenant(svc, 'adv3-recover-b');
  });

  afterAll(async () => {
    await svc?.close();
    await failing?.close();
    await ok?.close();
  });

  /** An endpoint of A to the always-failing receiver, with one failed delivery. */
  async function failedDelivery(type: string) {
    const client = deliveryApi(svc, a.apiKey);
    const endpoint = await client.createEndpoint(failing.url, [type]);
    const event = await client.publish(type, { n: 1 });
    const delivery = await client.deliveryWhen(
      event.id,
      (d) => d.status === 'failed',
      'the delivery to fail',
    );
    return { client, endpoint, event, delivery };
  }

  it('should not re-send a delivery created before `since` (microseconds count, as in the events list)', async () => {
    const { client, endpoint, delivery } =
      await failedDelivery('adv3.recover.us');
    const at = await createdAtUs(svc, delivery.id);
    // One microsecond after the delivery was created: it is not "since" that time.
    const since = plusUs(at, 1);
    const res = await client
      .api()
      .post(`/v1/endpoints/${endpoint.id}/recover`)
      .set(client.auth)
      .send({ since })
      .expect(202);
    expect({ since, queued: res.body.queued }).toEqual({ since, queued: 0 });
    // At its exact time it is (since is inclusive).
    const same = await client
      .api()
      .post(`/v1/endpoints/${endpoint.id}/recover`)
      .set(client.auth)
      .send({ since: at })
      .expect(202);
    expect(same.body.queued).toBe(1);
  });

  it('should re-send each failed delivery once across overlapping windows, and count what it sends', async () => {
    const { client, endpoint, event, delivery } = await failedDelivery(
      'adv3.recover.overlap',
    );
    const before = failing.received.length;
    const hour = new Date(Date.now() - 3600_000).toISOString();
    const minute = new Date(Date.now() - 60_000).toISOString();
    const answers = await Promise.all(
      [hour, minute, hour, minute].map((since) =>
        client
          .api()
          .post(`/v1/endpoints/${endpoint.id}/recover`)
          .set(client.auth)
          .send({ since }),
      ),
    );
    // A call that runs once an earlier call's attempt is in flight finds nothing failed.
    for (const r of answers) expect(r.status).toBe(202);
    const queued = answers.map((r) => r.body.queued);
    expect(queued.every((n) => n === 0 || n === 1)).toBe(true);
    expect(queued).toContain(1);
    const after = await client.deliveryWhen(
      event.id,
      (d) =>
        d.attemptCount === delivery.attemptCount + 1 && d.status === 'failed',
      'the recover attempt',
    );
    expect(after.attempts.map((x) => x.trigger).slice(-1)).toEqual(['manual']);
    await holdsFor(
      () => failing.received.length === before + 1,
      1000,
      'exactly one request for four racing recover calls',
    );
  });

  it('should answer 404 to recover and retry once the endpoint is deleted, and send nothing more', async () => {
    const { client, endpoint, delivery } = await failedDelivery(
      'adv3.recover.deleted',
    );
    await client
      .api()
      .delete(`/v1/endpoints/${endpoint.id}`)
      .set(client.auth)
      .expect(204);
    const before = failing.received.length;
    const since = new Date(Date.now() - 3600_000).toISOString();
    const recover = await client
      .api()
      .post(`/v1/endpoints/${endpoint.id}/recover`)
      .set(client.auth)
      .send({ since });
    expect(recover.status).toBe(404);
    for (const path of [
      `/v1/deliveries/${delivery.id}`,
      `/v1/deliveries/${delivery.id}/attempts`,
    ]) {
      const res = await client.api().get(path).set(client.auth);
      expect(res.status).toBe(404);
    }
    const retry = await client
      .api()
      .post(`/v1/deliveries/${delivery.id}/retry`)
      .set(client.auth);
    expect(retry.status).toBe(404);
    await holdsFor(
      () => failing.received.length === before,
      500,
      'no request to a deleted endpoint',
    );
  });

  it("should answer 404 (not 403/500) to B on A's delivery routes and list nothing of A's, changing nothing", async () => {
    const { delivery, event, endpoint } = await failedDelivery(
      'adv3.recover.foreign',
    );
    const watch = watchQueue(svc.queue);
    try {
      const before = await fingerprint(svc.dataSource, [a.id, b.id]);
      const api = () => request(svc.url);
      const single = [
        api().get(`/v1/deliveries/${delivery.id}`).set(b.auth),
        api().get(`/v1/deliveries/${delivery.id}/attempts`).set(b.auth),
        api()
          .get(`/v1/deliveries/${delivery.id}/attempts`)
          .query({ limit: 1, cursor: 'WzBd' })
          .set(b.auth),
        api()
          .post(`/v1/deliveries/${delivery.id}/retry`)
          .set(b.auth)
          .set('idempotency-key', `adv3-foreign-${delivery.id}`),
        api()
          .post(`/v1/endpoints/${endpoint.id}/recover`)
          .set(b.auth)
          .send({ since: new Date(Date.now() - 60_000).toISOString() }),
      ];
      for (const res of await Promise.all(single)) {
        expect({ path: pathOf(res), status: res.status }).toEqual({
          path: pathOf(res),
          status: 404,
        });
        expect(JSON.stringify(res.body)).not.toContain(event.id);
      }
      const lists = await Promise.all([
        api().get('/v1/deliveries').query({ eventId: event.id }).set(b.auth),
        api()
          .get('/v1/deliveries')
          .query({ endpointId: endpoint.id, status: 'failed' })
          .set(b.auth),
        api()
          .get('/v1/events')
          .query({ type: 'adv3.recover.foreign' })
          .set(b.auth),
      ]);
      for (const res of lists) {
        expect(res.status).toBe(200);
        expect(res.body).toEqual({ data: [], nextCursor: null });
      }
      expect(await fingerprint(svc.dataSource, [a.id, b.id])).toEqual(before);
      expect(await watch.jobsFor(svc.dataSource, [a.id, b.id])).toEqual([]);
    } finally {
      watch.stop();
    }
  });
});
