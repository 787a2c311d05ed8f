import request from 'supertest';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

const TRIPS = 40;

describe('when many delays are reported at once through HTTP', () => {
  let svc: E2eApp;
  let receiver: Receiver;
  let apiKey: string;

  beforeAll(async () => {
    // No reconciler and no outbox relay within the test: only the after-commit enqueue can
    // deliver, so a job that ran before its commit would show up as a missing delivery.
    svc = await startE2eApp({
      reconcileIntervalMs: 600_000,
      outboxRelay: false,
      workerConcurrency: 8,
      perEndpointConcurrency: 8,
    });
    receiver = await startReceiver();
    apiKey = await svc.createAccount('race');
    await request(svc.url)
      .post('/v1/endpoints')
      .set('authorization', `Bearer ${apiKey}`)
      .send({ url: receiver.url, eventTypes: ['trip.delayed'] })
      .expect(201);
  });

  afterAll(async () => {
    await svc?.close();
    await receiver?.close();
  });

  const auth = () => ({ authorization: `Bearer ${apiKey}` });

  it('should deliver every committed event once, on the first attempt', async () => {
    const trips = await Promise.all(
      Array.from({ length: TRIPS }, (_, i) =>
        request(svc.url)
          .post('/v1/trips')
          .set(auth())
          .send({
            reference: `RACE-${Date.now()}-${i}`,
            origin: 'Genoa',
            destination: 'Basel',
            plannedArrival: '2026-12-24T08:00:00Z',
          })
          .expect(201)
          .then((res) => res.body.id as string),
      ),
    );
    const delays = await Promise.all(
      trips.map((id) =>
        request(svc.url)
          .post(`/v1/trips/${id}/delays`)
          .set(auth())
          .send({ minutes: 10, reason: 'fog' })
          .expect(201)
          .then((res) => res.body.event.id as string),
      ),
    );
    await eventually(
      () => receiver.received.length >= TRIPS,
      'every delivery',
      20_000,
    );
    const ids = receiver.received.map((r) => r.headers['webhook-id']);
    expect(new Set(ids)).toEqual(new Set(delays));
    expect(ids).toHaveLength(TRIPS);
    const [row] = await svc.dataSource.query(
      `SELECT count(*)::int AS n, max(attempt_count)::int AS max FROM deliveries
       WHERE event_id = ANY($1::uuid[])`,
      [delays],
    );
    expect(row).toEqual({ n: TRIPS, max: 1 });
  });

  it('should refuse a delay on an arrived trip with 409 and store no event', async () => {
    const trip = await request(svc.url)
      .post('/v1/trips')
      .set(auth())
      .send({
        reference: `ARRIVED-${Date.now()}`,
        origin: 'Genoa',
        destination: 'Basel',
        plannedArrival: '2026-12-24T08:00:00Z',
      })
      .expect(201);
    await request(svc.url)
      .post(`/v1/trips/${trip.body.id}/arrival`)
      .set(auth())
      .expect(200);
    const count = async () =>
      (await svc.dataSource.query(`SELECT count(*)::int AS n FROM events`))[0]
        .n as number;
    const before = await count();
    const res = await request(svc.url)
      .post(`/v1/trips/${trip.body.id}/delays`)
      .set(auth())
      .send({ minutes: 5, reason: 'too late' })
      .expect(409);
    expect(res.body.message).toMatch(/has arrived/);
    expect(await count()).toBe(before);
    const [trow] = await svc.dataSource.query(
      `SELECT status FROM trips WHERE id = $1`,
      [trip.body.id],
    );
    expect(trow.status).toBe('arrived');
  });
});
