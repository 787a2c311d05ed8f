import request from 'supertest';
import { startE2eApp } from './support/harness';
import { startReceiver } from './support/receiver';
(async () => {
  const svc = await startE2eApp({
    reconcileIntervalMs: 600_000,
    outboxRelay: false,
    workerConcurrency: 8,
    perEndpointConcurrency: 8,
  });
  const receiver = await startReceiver();
  const key = await svc.createAccount('x');
  const auth = { authorization: `Bearer ${key}` };
  await request(svc.url)
    .post('/v1/endpoints')
    .set(auth)
    .send({ url: receiver.url, eventTypes: ['trip.delayed'] })
    .expect(201);
  const trips = await Promise.all(
    Array.from({ length: 40 }, (_, i) =>
      request(svc.url)
        .post('/v1/trips')
        .set(auth)
        .send({
          reference: `R-${Date.now()}-${i}`,
          origin: 'a',
          destination: 'b',
          plannedArrival: '2026-12-24T08:00:00Z',
        })
        .then((r) => r.body.id),
    ),
  );
  const delays = await Promise.all(
    trips.map((id) =>
      request(svc.url)
        .post(`/v1/trips/${id}/delays`)
        .set(auth)
        .send({ minutes: 10, reason: 'fog' })
        .then((r) => [r.status, r.body.event?.id]),
    ),
  );
  console.log(delays.map((d) => d[0]).join(','));
  await new Promise((r) => setTimeout(r, 6000));
  console.log('received', receiver.received.length);
  const rows = await svc.dataSource.query(
    `SELECT d.status, d.attempt_count, d.last_error, d.next_attempt_at FROM deliveries d JOIN events e ON e.id = d.event_id WHERE e.id = ANY($1::uuid[])`,
    [delays.map((d) => d[1])],
  );
  console.log(
    rows.reduce((m: any, r: any) => {
      m[r.status + ' ' + r.attempt_count] =
        (m[r.status + ' ' + r.attempt_count] || 0) + 1;
      return m;
    }, {}),
  );
  const att = await svc.dataSource.query(
    `SELECT a.status, a.error_class, a.error_message FROM delivery_attempts a JOIN deliveries d ON d.id=a.delivery_id WHERE d.event_id = ANY($1::uuid[])`,
    [delays.map((d) => d[1])],
  );
  console.log(
    att.reduce((m: any, r: any) => {
      m[r.status + ' ' + r.error_class] =
        (m[r.status + ' ' + r.error_class] || 0) + 1;
      return m;
    }, {}),
  );
  await receiver.close();
  await svc.close();
})();
