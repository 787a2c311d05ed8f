/**
 * Adversarial (round 5): an event type is at most 200 characters (CreateEventDto, and the
 * redteam2 spec holds it), but an endpoint's `eventTypes` entries have no length limit: an
 * endpoint subscribed to a longer type is accepted (201/200) and can never receive anything.
 * A careless caller (a type pasted twice, a payload pasted as a type) gets a silent endpoint
 * instead of a 400. Entries must take the limit events take.
 */
import request from 'supertest';
import { Tenant, createTenant, messageOf } from './support/api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

describe('adversarial5: endpoint subscriptions longer than any event type', () => {
  let svc: E2eApp;
  let t: Tenant;
  let receiver: Receiver;
  const longest = `adv5.${'b'.repeat(195)}`; // 200 characters: a valid event type
  const tooLong = `${longest}c`; // 201: no event can have it

  beforeAll(async () => {
    svc = await startE2eApp();
    t = await createTenant(svc, 'adv5-subscriptions');
    receiver = await startReceiver();
  });

  afterAll(async () => {
    await receiver?.close();
    await svc?.close();
  });

  const endpointCount = async () =>
    (
      await svc.dataSource.query(
        'SELECT count(*)::int AS n FROM endpoints WHERE account_id = $1',
        [t.id],
      )
    )[0].n as number;

  it('should refuse POST /v1/endpoints subscribing to a 201-character type with a 400, creating nothing', async () => {
    // Control: no event can have that type.
    const event = await request(svc.url)
      .post('/v1/events')
      .set(t.auth)
      .send({ type: tooLong, payload: {} });
    expect(event.status).toBe(400);

    const before = await endpointCount();
    const res = await request(svc.url)
      .post('/v1/endpoints')
      .set(t.auth)
      .send({ url: receiver.url, eventTypes: ['trip.delayed', tooLong] });
    expect({ status: res.status, message: messageOf(res) }).toEqual({
      status: 400,
      message: expect.stringMatching(/eventTypes/),
    });
    expect(await endpointCount()).toBe(before);
  });

  it('should refuse PATCH /v1/endpoints/:id to a 201-character type with a 400, keeping its types', async () => {
    const created = await request(svc.url)
      .post('/v1/endpoints')
      .set(t.auth)
      .send({ url: receiver.url, eventTypes: ['trip.delayed'] })
      .expect(201);
    const res = await request(svc.url)
      .patch(`/v1/endpoints/${created.body.id}`)
      .set(t.auth)
      .send({ eventTypes: [tooLong] });
    expect({ status: res.status, message: messageOf(res) }).toEqual({
      status: 400,
      message: expect.stringMatching(/eventTypes/),
    });
    const [row] = await svc.dataSource.query(
      'SELECT event_types FROM endpoints WHERE id = $1',
      [created.body.id],
    );
    expect(row.event_types).toEqual(['trip.delayed']);
  });

  it('should accept a 200-character type and deliver an event of it (control)', async () => {
    const endpoint = await request(svc.url)
      .post('/v1/endpoints')
      .set(t.auth)
      .send({ url: receiver.url, eventTypes: [longest] })
      .expect(201);
    expect(endpoint.body.eventTypes).toEqual([longest]);
    const event = await request(svc.url)
      .post('/v1/events')
      .set(t.auth)
      .send({ type: longest, payload: { n: 200 } })
      .expect(201);
    expect(event.body.deliveries).toBe(1);
    const got = await eventually(
      () =>
        receiver.received.find(
          (r) => r.headers['webhook-id'] === event.body.id,
        ),
      'the event of the longest type',
    );
    expect(JSON.parse(got.body)).toMatchObject({
      type: longest,
      data: { n: 200 },
    });
  });
});
