import request, { Test } from 'supertest';
import {
  QueueWatch,
  Tenant,
  createTenant,
  deliveriesSettled,
  fingerprint,
  messageOf,
  tripBody,
  watchQueue,
} from './support/api';
import { E2eApp, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

describe('when two accounts share the service', () => {
  let svc: E2eApp;
  let receiverA: Receiver;
  let receiverB: Receiver;
  let watch: QueueWatch;
  let a: Tenant;
  let b: Tenant;
  /** A's resources, created in the first spec. */
  const mine: {
    endpoint?: any;
    trip?: any;
    event?: any;
    delivery?: any;
    endpointB?: any;
  } = {};

  beforeAll(async () => {
    svc = await startE2eApp();
    [receiverA, receiverB] = await Promise.all([
      startReceiver(),
      startReceiver(),
    ]);
    [a, b] = await Promise.all([
      createTenant(svc, 'a'),
      createTenant(svc, 'b'),
    ]);
    watch = watchQueue(svc.queue);
  });

  afterAll(async () => {
    watch?.stop();
    await svc?.close();
    await Promise.all([receiverA?.close(), receiverB?.close()]);
  });

  const api = () => request(svc.url);

  it("should deliver A's events to A's endpoints only", async () => {
    mine.endpoint = (
      await api()
        .post('/v1/endpoints')
        .set(a.auth)
        .send({ url: receiverA.url, eventTypes: ['trip.delayed'] })
        .expect(201)
    ).body;
    // B subscribes to every type, so any leak of A's events would reach it.
    mine.endpointB = (
      await api()
        .post('/v1/endpoints')
        .set(b.auth)
        .send({ url: receiverB.url })
        .expect(201)
    ).body;
    mine.trip = (
      await api().post('/v1/trips').set(a.auth).send(tripBody()).expect(201)
    ).body;
    const delay = await api()
      .post(`/v1/trips/${mine.trip.id}/delays`)
      .set(a.auth)
      .send({ minutes: 15, reason: 'border check' })
      .expect(201);
    mine.event = delay.body.event;
    expect(mine.event.deliveries).toBe(1);
    [mine.delivery] = await deliveriesSettled(svc, a, mine.event.id);
    expect(mine.delivery.endpointId).toBe(mine.endpoint.id);

    expect(receiverA.received).toHaveLength(1);
    expect(JSON.parse(receiverA.received[0].body)).toMatchObject({
      type: 'trip.delayed',
      data: { trip: { id: mine.trip.id } },
    });
    expect(receiverB.received).toEqual([]);
    const [{ count }] = await svc.dataSource.query(
      'SELECT count(*)::int AS count FROM deliveries WHERE endpoint_id = $1',
      [mine.endpointB.id],
    );
    expect(count).toBe(0);
  });

  it("should deliver A's generic events to A's endpoints only", async () => {
    await api()
      .patch(`/v1/endpoints/${mine.endpoint.id}`)
      .set(a.auth)
      .send({ eventTypes: null })
      .expect(200);
    const event = await api()
      .post('/v1/events')
      .set(a.auth)
      .send({ type: 'parcel.scanned', payload: { parcel: 'P-7' } })
      .expect(201);
    expect(event.body.deliveries).toBe(1);
    await deliveriesSettled(svc, a, event.body.id);
    expect(receiverA.received).toHaveLength(2);
    expect(receiverB.received).toEqual([]);
  });

  it('should list only the caller’s own endpoints', async () => {
    const listA = await api().get('/v1/endpoints').set(a.auth).expect(200);
    const listB = await api().get('/v1/endpoints').set(b.auth).expect(200);
    expect(listA.body.data.map((e: any) => e.id)).toEqual([mine.endpoint.id]);
    expect(listB.body.data.map((e: any) => e.id)).toEqual([mine.endpointB.id]);
  });

  describe("when B uses A's ids", () => {
    const endpoint = () => mine.endpoint.id;
    const asB = (method: 'get' | 'post' | 'patch' | 'delete', path: string) =>
      api()[method](path).set(b.auth);
    const foreign: [string, () => Test][] = [
      ['read the endpoint', () => asB('get', `/v1/endpoints/${endpoint()}`)],
      [
        'read the endpoint secret',
        () => asB('get', `/v1/endpoints/${endpoint()}/secret`),
      ],
      [
        'patch the endpoint',
        () =>
          asB('patch', `/v1/endpoints/${endpoint()}`).send({
            url: receiverB.url,
            description: 'hijacked',
            eventTypes: ['trip.delayed'],
          }),
      ],
      [
        'delete the endpoint',
        () => asB('delete', `/v1/endpoints/${endpoint()}`),
      ],
      [
        'rotate the endpoint secret',
        () => asB('post', `/v1/endpoints/${endpoint()}/rotate-secret`),
      ],
      [
        'enable the endpoint',
        () => asB('post', `/v1/endpoints/${endpoint()}/enable`),
      ],
      [
        'recover the endpoint',
        () =>
          asB('post', `/v1/endpoints/${endpoint()}/recover`).send({
            since: new Date(Date.now() - 3600_000).toISOString(),
          }),
      ],
      ['read the trip', () => asB('get', `/v1/trips/${mine.trip.id}`)],
      [
        'delay the trip',
        () =>
          asB('post', `/v1/trips/${mine.trip.id}/delays`).send({
            minutes: 5,
            reason: 'sabotage',
          }),
      ],
      [
        'mark the trip arrived',
        () => asB('post', `/v1/trips/${mine.trip.id}/arrival`),
      ],
      ['read the event', () => asB('get', `/v1/events/${mine.event.id}`)],
      [
        'read the event deliveries',
        () => asB('get', `/v1/events/${mine.event.id}/deliveries`),
      ],
      [
        'retry the delivery',
        () => asB('post', `/v1/deliveries/${mine.delivery.id}/retry`),
      ],
    ];

    it.each(foreign)(
      'should answer 404 when B tries to %s, and change nothing of A',
      async (_what, send) => {
        const before = await fingerprint(svc.dataSource, [a.id, b.id]);
        watch.reset();
        const res = await send();
        expect(res.status).toBe(404);
        expect(messageOf(res)).toMatch(
          /^(Endpoint|Trip|Event|Delivery) .* not found$/,
        );
        // Nothing of A's resource is in the answer.
        expect(JSON.stringify(res.body)).not.toMatch(/whsec_|receiver|hook/);
        expect(await fingerprint(svc.dataSource, [a.id, b.id])).toEqual(before);
        expect(await watch.jobsFor(svc.dataSource, [a.id, b.id])).toEqual([]);
      },
    );

    it("should leave A's data readable by A and unchanged", async () => {
      const endpointA = await api()
        .get(`/v1/endpoints/${mine.endpoint.id}`)
        .set(a.auth)
        .expect(200);
      expect(endpointA.body).toMatchObject({
        url: receiverA.url,
        description: '',
        eventTypes: null,
        disabled: false,
      });
      const trip = await api()
        .get(`/v1/trips/${mine.trip.id}`)
        .set(a.auth)
        .expect(200);
      expect(trip.body).toMatchObject({
        status: 'delayed',
        delayMinutesTotal: 15,
      });
      const log = await api()
        .get(`/v1/events/${mine.event.id}/deliveries`)
        .set(a.auth)
        .expect(200);
      expect(log.body.data).toHaveLength(1);
      expect(log.body.data[0].attempts).toHaveLength(1);
      expect(receiverA.received).toHaveLength(2);
      expect(receiverB.received).toEqual([]);
    });
  });

  it("should never send B's events to A", async () => {
    const event = await api()
      .post('/v1/events')
      .set(b.auth)
      .send({ type: 'parcel.scanned', payload: { parcel: 'P-B' } })
      .expect(201);
    expect(event.body.deliveries).toBe(1);
    await deliveriesSettled(svc, b, event.body.id);
    expect(receiverB.received).toHaveLength(1);
    expect(JSON.parse(receiverB.received[0].body).data).toEqual({
      parcel: 'P-B',
    });
    expect(receiverA.received).toHaveLength(2);
  });
});
