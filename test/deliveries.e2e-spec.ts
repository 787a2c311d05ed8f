import request from 'supertest';
import { Webhook } from 'standardwebhooks';
import {
  ADMIN_TOKEN,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

describe('when a trip is delayed', () => {
  let svc: E2eApp;
  let receiver: Receiver;
  let apiKey: string;

  beforeAll(async () => {
    svc = await startE2eApp();
    receiver = await startReceiver();
    apiKey = await svc.createAccount();
  });

  afterAll(async () => {
    await svc?.close();
    await receiver?.close();
  });

  const api = () => request(svc.url);
  const auth = () => ({ authorization: `Bearer ${apiKey}` });

  it('should deliver a signed trip.delayed webhook that standardwebhooks verifies', async () => {
    const endpoint = await api()
      .post('/v1/endpoints')
      .set(auth())
      .send({ url: receiver.url, eventTypes: ['trip.delayed'] })
      .expect(201);
    expect(endpoint.body.secret).toMatch(/^whsec_/);
    const trip = await api()
      .post('/v1/trips')
      .set(auth())
      .send({
        reference: 'T-1',
        origin: 'Lyon',
        destination: 'Turin',
        plannedArrival: '2026-12-01T10:00:00Z',
      })
      .expect(201);
    const delay = await api()
      .post(`/v1/trips/${trip.body.id}/delays`)
      .set(auth())
      .send({ minutes: 25, reason: 'snow on the pass' })
      .expect(201);
    expect(delay.body.trip).toMatchObject({
      status: 'delayed',
      delayMinutesTotal: 25,
    });
    const got = await eventually(() => receiver.received[0], 'the webhook');
    const verified = new Webhook(endpoint.body.secret).verify(
      got.body,
      got.headers as any,
    );
    expect(verified).toMatchObject({
      type: 'trip.delayed',
      data: { delay: { minutes: 25 } },
    });
    expect(got.headers['webhook-id']).toBe(delay.body.event.id);
    const log = await eventually(async () => {
      const res = await api()
        .get(`/v1/events/${delay.body.event.id}/deliveries`)
        .set(auth());
      return res.body.data?.[0]?.status === 'succeeded' && res.body;
    }, 'the delivery to be recorded');
    expect(log.data[0].attempts).toHaveLength(1);
    expect(log.data[0].attempts[0]).toMatchObject({
      status: 'succeeded',
      statusCode: 200,
      trigger: 'scheduled',
    });
  });

  it('should report health without an API key, and the counters only to the admin token', async () => {
    const anonymous = await api().get('/health').expect(200);
    expect(anonymous.body).toEqual({
      status: 'ok',
      database: 'up',
      redis: 'up',
    });
    const res = await api()
      .get('/health')
      .set('authorization', `Bearer ${ADMIN_TOKEN}`)
      .expect(200);
    expect(res.body).toMatchObject({
      status: 'ok',
      database: 'up',
      redis: 'up',
      outbox: { pending: expect.any(Number), dispatched: expect.any(Number) },
      transactions: { committed: expect.any(Number) },
    });
    expect(res.body.transactions.committed).toBeGreaterThan(0);
  });
});
