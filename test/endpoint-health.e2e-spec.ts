import request from 'supertest';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

describe('when an endpoint has only failed for longer than the disable threshold', () => {
  let svc: E2eApp;
  let failing: Receiver;
  let apiKey: string;

  beforeAll(async () => {
    svc = await startE2eApp({
      endpointDisableAfterMs: 300,
      retryScheduleMs: [0, 200, 200, 200, 200, 200, 200],
    });
    failing = await startReceiver((_n, _r, res) => {
      res.statusCode = 500;
      res.end('down');
    });
    apiKey = await svc.createAccount('health');
  });

  afterAll(async () => {
    await svc?.close();
    await failing?.close();
  });

  const auth = () => ({ authorization: `Bearer ${apiKey}` });

  it('should disable it, stop sending, and create no deliveries until it is enabled', async () => {
    const endpoint = await request(svc.url)
      .post('/v1/endpoints')
      .set(auth())
      .send({ url: failing.url })
      .expect(201);
    const first = await request(svc.url)
      .post('/v1/events')
      .set(auth())
      .send({ type: 'probe.ping', payload: { n: 1 } })
      .expect(201);
    const disabled = await eventually(async () => {
      const res = await request(svc.url)
        .get(`/v1/endpoints/${endpoint.body.id}`)
        .set(auth());
      return res.body.disabled && res.body;
    }, 'the endpoint to be disabled');
    expect(disabled.disabledReason).toMatch(/every delivery failed since/);

    const log = await eventually(async () => {
      const res = await request(svc.url)
        .get(`/v1/events/${first.body.id}/deliveries`)
        .set(auth());
      return res.body.data[0].status === 'failed' && res.body.data[0];
    }, 'the delivery to fail');
    const sent = failing.received.length;
    // The attempt after the disabling is refused without a request.
    expect(log.attempts.at(-1)).toMatchObject({ status: 'failed' });
    expect(log.attempts.length).toBeLessThan(7);

    const second = await request(svc.url)
      .post('/v1/events')
      .set(auth())
      .send({ type: 'probe.ping', payload: { n: 2 } })
      .expect(201);
    expect(second.body.deliveries).toBe(0);
    expect(failing.received.length).toBe(sent);

    await request(svc.url)
      .post(`/v1/endpoints/${endpoint.body.id}/enable`)
      .set(auth())
      .expect(200);
    const third = await request(svc.url)
      .post('/v1/events')
      .set(auth())
      .send({ type: 'probe.ping', payload: { n: 3 } })
      .expect(201);
    expect(third.body.deliveries).toBe(1);
    await eventually(
      () => failing.received.length > sent,
      'a delivery after enabling',
    );
  });
});
