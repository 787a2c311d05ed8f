/**
 * Adversarial, round 3 (state and concurrency): events published while their endpoint is
 * being deleted. Every request must either commit (its event and one delivery per endpoint
 * that still exists) or be refused having done nothing; none may be a 500.
 */
import request from 'supertest';
import { Tenant, createTenant, tripBody } from './support/api';
import { E2eApp, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';
import { failOnProcessCrashes } from './support/process-crashes';

jest.setTimeout(90_000);

describe('adversarial3 state: publishing while the endpoint is deleted', () => {
  failOnProcessCrashes();
  let svc: E2eApp;
  let tenant: Tenant;
  let receiver: Receiver;

  beforeAll(async () => {
    svc = await startE2eApp();
    receiver = await startReceiver();
    tenant = await createTenant(svc, 'adv3-state-endpoint-race');
  });

  afterAll(async () => {
    await svc?.close();
    await receiver?.close();
  });

  const api = () => request(svc.url);

  it('should answer every event and delay 201 (or a retryable 503), never 500, while the endpoint is deleted', async () => {
    const tripId = (
      await api()
        .post('/v1/trips')
        .set(tenant.auth)
        .send(tripBody())
        .expect(201)
    ).body.id;
    const statuses: Record<string, number> = {};
    const bodies: string[] = [];
    for (let round = 0; round < 15; round++) {
      const endpoint = (
        await api()
          .post('/v1/endpoints')
          .set(tenant.auth)
          .send({ url: receiver.url })
          .expect(201)
      ).body.id;
      const posts = Array.from({ length: 12 }, (_, i) =>
        i % 2
          ? api()
              .post('/v1/events')
              .set(tenant.auth)
              .send({ type: 'adv3.race', payload: { round, i } })
          : api()
              .post(`/v1/trips/${tripId}/delays`)
              .set(tenant.auth)
              .send({ minutes: 1, reason: `round ${round}` }),
      );
      const del = api().delete(`/v1/endpoints/${endpoint}`).set(tenant.auth);
      const [deleted, ...answers] = await Promise.all([del, ...posts]);
      expect(deleted.status).toBe(204);
      for (const res of answers) {
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (res.status >= 500) bodies.push(`${res.status} ${res.text}`);
        if (res.status === 503) expect(res.headers['retry-after']).toBe('1');
      }
    }
    // A lost race is a 503 with Retry-After (README), never a 500.
    expect({
      statuses,
      fiveHundreds: bodies.filter((b) => b.startsWith('500')),
    }).toEqual({ statuses, fiveHundreds: [] });
    // Every committed event has exactly the deliveries its answer announced.
    const mismatches = await svc.dataSource.query(
      `SELECT e.id FROM events e WHERE e.account_id = $1
          AND (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id) > 1`,
      [tenant.id],
    );
    expect(mismatches).toEqual([]);
  });
});
