import { randomUUID } from 'crypto';
import request, { Test } from 'supertest';
import { MAX_PAYLOAD_BYTES } from '../src/events/events.service';
import {
  QueueWatch,
  Tenant,
  createTenant,
  fingerprint,
  messageOf,
  tripBody,
  watchQueue,
} from './support/api';
import {
  ADMIN_TOKEN,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

/** One bad request: how to send it, and the 4xx and message it must get. */
interface BadRequest {
  what: string;
  send: () => Test;
  status: number;
  message: RegExp;
}

describe('when a request is bad', () => {
  let svc: E2eApp;
  let receiver: Receiver;
  let watch: QueueWatch;
  /** Has an endpoint subscribed to every event type: anything that slips through is seen. */
  let a: Tenant;
  /** Another account, whose ids are foreign to `a`. */
  let b: Tenant;
  /** No endpoints: holds an arrived trip and a used idempotency key. */
  let c: Tenant;
  let trip: { id: string; reference: string };
  let endpoint: { id: string; url: string };
  let foreignTrip: { id: string };
  let foreignEndpoint: { id: string };
  let arrivedTrip: { id: string };
  const usedKey = `bad-input-${randomUUID()}`;
  /** The name of every account a bad request tries to create. */
  const sneaky = `sneaky-${randomUUID()}`;

  beforeAll(async () => {
    svc = await startE2eApp();
    receiver = await startReceiver();
    [a, b, c] = await Promise.all([
      createTenant(svc, 'a'),
      createTenant(svc, 'b'),
      createTenant(svc, 'c'),
    ]);
    const api = () => request(svc.url);
    // NOTE: trips first, endpoints second: no delivery is in flight while the specs run, so
    // the fingerprints below only change if a bad request changes something.
    trip = (await api().post('/v1/trips').set(a.auth).send(tripBody())).body;
    foreignTrip = (await api().post('/v1/trips').set(b.auth).send(tripBody()))
      .body;
    arrivedTrip = (await api().post('/v1/trips').set(c.auth).send(tripBody()))
      .body;
    await api()
      .post(`/v1/trips/${arrivedTrip.id}/arrival`)
      .set(c.auth)
      .expect(200);
    await api()
      .post('/v1/trips')
      .set(c.auth)
      .set('idempotency-key', usedKey)
      .send(tripBody())
      .expect(201);
    endpoint = (
      await api()
        .post('/v1/endpoints')
        .set(a.auth)
        .send({ url: receiver.url })
        .expect(201)
    ).body;
    foreignEndpoint = (
      await api()
        .post('/v1/endpoints')
        .set(b.auth)
        .send({ url: receiver.url })
        .expect(201)
    ).body;
    watch = watchQueue(svc.queue);
  });

  afterAll(async () => {
    watch?.stop();
    await svc?.close();
    await receiver?.close();
  });

  const api = () => request(svc.url);
  const post = (path: string, tenant = () => a) =>
    api().post(path).set(tenant().auth);
  const patch = (path: string) => api().patch(path).set(a.auth);
  const get = (path: string) => api().get(path).set(a.auth);
  const del = (path: string) => api().delete(path).set(a.auth);
  const json = (path: string, raw: string) =>
    post(path).set('content-type', 'application/json').send(raw);
  const event = (overrides: Record<string, unknown> = {}) => ({
    type: 'parcel.scanned',
    payload: { parcel: 'P-1' },
    ...overrides,
  });
  const delay = (minutes: unknown) =>
    post(`/v1/trips/${trip.id}/delays`).send({ minutes, reason: 'fog' });
  const days = (n: number) =>
    new Date(Date.now() + n * 24 * 3600 * 1000).toISOString();

  /** Sends the request; asserts the answer, and that nothing changed and nothing was queued. */
  async function expectRefused({ send, status, message }: BadRequest) {
    const accounts = [a.id, b.id, c.id];
    const names = [sneaky, ''];
    const before = await fingerprint(svc.dataSource, accounts, names);
    watch.reset();
    const res = await send();
    expect({ status: res.status, message: messageOf(res) }).toEqual({
      status,
      message: expect.stringMatching(message),
    });
    expect(await fingerprint(svc.dataSource, accounts, names)).toEqual(before);
    expect(await watch.jobsFor(svc.dataSource, accounts)).toEqual([]);
  }

  describe('when the body is not JSON', () => {
    it.each<BadRequest>([
      {
        what: 'malformed JSON',
        send: () => json('/v1/trips', '{"reference": "T-9",'),
        status: 400,
        message: /^Malformed JSON body: /,
      },
      {
        what: 'JSON with a trailing comma',
        send: () => json('/v1/events', '{"type": "a.b", "payload": {},}'),
        status: 400,
        message: /^Malformed JSON body: /,
      },
      {
        what: 'a bare JSON string',
        send: () => json('/v1/events', '"parcel.scanned"'),
        status: 400,
        message: /^Malformed JSON body: /,
      },
      {
        what: 'a text/plain body',
        send: () =>
          post('/v1/trips')
            .set('content-type', 'text/plain')
            .send(JSON.stringify(tripBody())),
        status: 415,
        message: /Content-Type must be application\/json, got "text\/plain"/,
      },
      {
        what: 'a form-encoded body',
        send: () =>
          post('/v1/events').type('form').send({ type: 'a.b', payload: 'x' }),
        status: 415,
        message: /Content-Type must be application\/json/,
      },
      {
        what: 'a JSON body in another charset',
        send: () =>
          post('/v1/events')
            .set('content-type', 'application/json; charset=latin1')
            .send(JSON.stringify(event())),
        status: 415,
        message: /charset.*send UTF-8 JSON/i,
      },
    ])('should answer $status to $what', (bad) => expectRefused(bad));
  });

  describe('when the body has unknown, missing or mistyped fields', () => {
    it.each<BadRequest>([
      {
        what: 'an unknown trip field',
        send: () => post('/v1/trips').send(tripBody({ color: 'red' })),
        status: 400,
        message: /property color should not exist/,
      },
      {
        what: 'an endpoint created with its own secret',
        send: () =>
          post('/v1/endpoints').send({ url: receiver.url, secret: 'whsec_x' }),
        status: 400,
        message: /property secret should not exist/,
      },
      {
        what: 'an endpoint patched to disabled',
        send: () =>
          patch(`/v1/endpoints/${endpoint.id}`).send({ disabled: true }),
        status: 400,
        message: /property disabled should not exist/,
      },
      {
        what: 'an event with an id',
        send: () => post('/v1/events').send(event({ id: randomUUID() })),
        status: 400,
        message: /property id should not exist/,
      },
      {
        what: 'a delay with an unknown field',
        send: () =>
          post(`/v1/trips/${trip.id}/delays`).send({
            minutes: 5,
            reason: 'fog',
            severity: 'high',
          }),
        status: 400,
        message: /property severity should not exist/,
      },
      {
        what: 'a trip without origin and destination',
        send: () =>
          post('/v1/trips').send({
            reference: 'T-missing',
            plannedArrival: '2026-12-01T10:00:00Z',
          }),
        status: 400,
        message: /origin must be a string.*destination must be a string/,
      },
      {
        what: 'an empty trip body',
        send: () => post('/v1/trips').send({}),
        status: 400,
        message: /reference .*plannedArrival must be an ISO 8601 date-time/,
      },
      {
        what: 'an event without payload',
        send: () => post('/v1/events').send({ type: 'parcel.scanned' }),
        status: 400,
        message: /payload must be an object/,
      },
      {
        what: 'a delay without reason',
        send: () => post(`/v1/trips/${trip.id}/delays`).send({ minutes: 5 }),
        status: 400,
        message: /reason must be a string/,
      },
      {
        what: 'an endpoint without url',
        send: () => post('/v1/endpoints').send({ description: 'mine' }),
        status: 400,
        message: /url must be a string/,
      },
      {
        what: 'a recover without since',
        send: () => post(`/v1/endpoints/${endpoint.id}/recover`).send({}),
        status: 400,
        message: /since must be an ISO 8601 date-time/,
      },
      {
        what: 'an account without name',
        send: () =>
          api()
            .post('/v1/accounts')
            .set('authorization', `Bearer ${ADMIN_TOKEN}`)
            .send({}),
        status: 400,
        message: /name must be a string/,
      },
      {
        what: 'an account with an empty name',
        send: () =>
          api()
            .post('/v1/accounts')
            .set('authorization', `Bearer ${ADMIN_TOKEN}`)
            .send({ name: '' }),
        status: 400,
        message: /name should not be empty/,
      },
      {
        what: 'an account with an unknown field',
        send: () =>
          api()
            .post('/v1/accounts')
            .set('authorization', `Bearer ${ADMIN_TOKEN}`)
            .send({ name: sneaky, apiKey: 'whk_mine' }),
        status: 400,
        message: /property apiKey should not exist/,
      },
      {
        what: 'a numeric trip reference',
        send: () => post('/v1/trips').send(tripBody({ reference: 42 })),
        status: 400,
        message: /reference must be a string/,
      },
      {
        what: 'a plannedArrival that is not a date',
        send: () =>
          post('/v1/trips').send(tripBody({ plannedArrival: 'tomorrow' })),
        status: 400,
        message: /plannedArrival must be an ISO 8601 date-time/,
      },
      {
        what: 'a string payload',
        send: () => post('/v1/events').send(event({ payload: 'hello' })),
        status: 400,
        message: /payload must be an object/,
      },
      {
        what: 'an array payload',
        send: () => post('/v1/events').send(event({ payload: [1, 2] })),
        status: 400,
        message: /payload must be an object/,
      },
      {
        what: 'a numeric event type',
        send: () => post('/v1/events').send(event({ type: 7 })),
        status: 400,
        message: /type must be a string/,
      },
      {
        what: 'eventTypes as a string',
        send: () =>
          post('/v1/endpoints').send({
            url: receiver.url,
            eventTypes: 'trip.delayed',
          }),
        status: 400,
        message: /eventTypes must be an array/,
      },
      {
        what: 'a numeric url',
        send: () => post('/v1/endpoints').send({ url: 8080 }),
        status: 400,
        message: /url must be a string/,
      },
      {
        what: 'a JSON array as the body',
        send: () => post('/v1/trips').send([tripBody()]),
        status: 400,
        message: /./,
      },
    ])('should answer $status to $what', (bad) => expectRefused(bad));
  });

  describe('when a delay has a bad number of minutes', () => {
    it.each<BadRequest>([
      {
        what: '0 minutes',
        send: () => delay(0),
        status: 400,
        message: /minutes must be at least 1/,
      },
      {
        what: '-5 minutes',
        send: () => delay(-5),
        status: 400,
        message: /minutes must be at least 1/,
      },
      {
        what: '1.5 minutes',
        send: () => delay(1.5),
        status: 400,
        message: /minutes must be a whole number of minutes/,
      },
      {
        what: '10^9 minutes',
        send: () => delay(1e9),
        status: 400,
        message: /minutes must be at most 43200 \(30 days\)/,
      },
      {
        what: 'minutes as the string "10"',
        send: () => delay('10'),
        status: 400,
        message: /minutes must be a whole number of minutes/,
      },
      {
        what: 'null minutes',
        send: () => delay(null),
        status: 400,
        message: /minutes must be a whole number of minutes/,
      },
    ])('should answer $status to $what', (bad) => expectRefused(bad));
  });

  describe('when the JSON holds what Postgres cannot store', () => {
    const nested = (depth: number): unknown =>
      depth === 0 ? 'leaf' : { a: nested(depth - 1) };
    it.each<BadRequest>([
      {
        what: 'a NUL character in a payload string',
        send: () =>
          post('/v1/events').send(event({ payload: { s: 'a\u0000b' } })),
        status: 400,
        message:
          /^Invalid JSON body: body\.payload\.s contains a NUL character \(\\u0000\)$/,
      },
      {
        what: 'a NUL character in a payload key',
        send: () =>
          post('/v1/events').send(event({ payload: { ['k\u0000']: 1 } })),
        status: 400,
        message:
          /^Invalid JSON body: a key in body\.payload contains a NUL character/,
      },
      {
        what: 'a NUL character in a trip reference',
        send: () => post('/v1/trips').send(tripBody({ reference: 'T\u0000' })),
        status: 400,
        message: /body\.reference contains a NUL character/,
      },
      {
        what: 'an unpaired surrogate in a payload string',
        send: () =>
          json('/v1/events', '{"type": "a.b", "payload": {"s": "\\ud800x"}}'),
        status: 400,
        message: /body\.payload\.s contains an unpaired UTF-16 surrogate/,
      },
      {
        what: 'a payload nested 100 levels deep',
        send: () => post('/v1/events').send(event({ payload: nested(100) })),
        status: 400,
        message: /is nested deeper than 64 levels/,
      },
      {
        what: 'a payload nested 20000 levels deep',
        send: () =>
          json(
            '/v1/events',
            `{"type": "a.b", "payload": ${'['.repeat(20_000)}${']'.repeat(20_000)}}`,
          ),
        status: 400,
        message: /is nested deeper than 64 levels/,
      },
    ])('should answer $status to $what', (bad) => expectRefused(bad));
  });

  describe('when the body is too large', () => {
    it.each<BadRequest>([
      {
        what: 'a body over the 300kb limit',
        send: () =>
          post('/v1/events').send(
            event({ payload: { blob: 'x'.repeat(310 * 1024) } }),
          ),
        status: 413,
        message: /Request body exceeds the limit of 300kb/,
      },
      {
        what: 'an event payload over 256 KiB inside the body limit',
        send: () =>
          post('/v1/events').send(
            event({ payload: { blob: 'x'.repeat(MAX_PAYLOAD_BYTES) } }),
          ),
        status: 413,
        message: /payload is \d+ bytes of JSON; the limit is 262144 bytes/,
      },
    ])('should answer $status to $what', (bad) => expectRefused(bad));
  });

  describe('when an id is unknown, foreign or not a UUID', () => {
    const unknown = randomUUID();
    it.each<BadRequest>([
      {
        what: 'an unknown trip',
        send: () => get(`/v1/trips/${unknown}`),
        status: 404,
        message: new RegExp(`Trip ${unknown} not found`),
      },
      {
        what: 'a delay of an unknown trip',
        send: () =>
          post(`/v1/trips/${unknown}/delays`).send({
            minutes: 5,
            reason: 'fog',
          }),
        status: 404,
        message: /Trip .* not found/,
      },
      {
        what: 'the arrival of an unknown trip',
        send: () => post(`/v1/trips/${unknown}/arrival`),
        status: 404,
        message: /Trip .* not found/,
      },
      {
        what: 'a delay of a foreign trip',
        send: () =>
          post(`/v1/trips/${foreignTrip.id}/delays`).send({
            minutes: 5,
            reason: 'fog',
          }),
        status: 404,
        message: /Trip .* not found/,
      },
      {
        what: 'an unknown endpoint',
        send: () => get(`/v1/endpoints/${unknown}`),
        status: 404,
        message: /Endpoint .* not found/,
      },
      {
        what: 'a patch of a foreign endpoint',
        send: () =>
          patch(`/v1/endpoints/${foreignEndpoint.id}`).send({
            description: 'mine now',
          }),
        status: 404,
        message: /Endpoint .* not found/,
      },
      {
        what: 'a delete of a foreign endpoint',
        send: () => del(`/v1/endpoints/${foreignEndpoint.id}`),
        status: 404,
        message: /Endpoint .* not found/,
      },
      {
        what: 'a secret rotation of an unknown endpoint',
        send: () => post(`/v1/endpoints/${unknown}/rotate-secret`),
        status: 404,
        message: /Endpoint .* not found/,
      },
      {
        what: 'a recover of an unknown endpoint',
        send: () =>
          post(`/v1/endpoints/${unknown}/recover`).send({ since: days(-1) }),
        status: 404,
        message: /Endpoint .* not found/,
      },
      {
        what: 'an unknown event',
        send: () => get(`/v1/events/${unknown}`),
        status: 404,
        message: /Event .* not found/,
      },
      {
        what: 'the deliveries of an unknown event',
        send: () => get(`/v1/events/${unknown}/deliveries`),
        status: 404,
        message: /Event .* not found/,
      },
      {
        what: 'a retry of an unknown delivery',
        send: () => post(`/v1/deliveries/${unknown}/retry`),
        status: 404,
        message: /Delivery .* not found/,
      },
      {
        what: 'an unknown route',
        send: () => post('/v1/shipments').send({}),
        status: 404,
        message: /Cannot POST \/v1\/shipments/,
      },
      {
        what: 'a trip id that is not a UUID',
        send: () => get('/v1/trips/not-a-uuid'),
        status: 400,
        message: /id must be a UUID/,
      },
      {
        what: 'a delay of a trip id that is not a UUID',
        send: () =>
          post('/v1/trips/123/delays').send({ minutes: 5, reason: 'fog' }),
        status: 400,
        message: /id must be a UUID/,
      },
      {
        what: 'a patch of an endpoint id that is not a UUID',
        send: () => patch('/v1/endpoints/xyz').send({ description: 'x' }),
        status: 400,
        message: /id must be a UUID/,
      },
      {
        what: 'a delete of an endpoint id that is not a UUID',
        send: () => del(`/v1/endpoints/${endpoint.id}x`),
        status: 400,
        message: /id must be a UUID/,
      },
      {
        what: 'an event id that is not a UUID',
        send: () => get('/v1/events/zzz/deliveries'),
        status: 400,
        message: /id must be a UUID/,
      },
      {
        what: 'a delivery id that is not a UUID',
        send: () => post('/v1/deliveries/nope/retry'),
        status: 400,
        message: /id must be a UUID/,
      },
    ])('should answer $status to $what', (bad) => expectRefused(bad));
  });

  describe('when a state change is not allowed', () => {
    it.each<BadRequest>([
      {
        what: 'a trip with a reference already taken',
        send: () =>
          post('/v1/trips').send(tripBody({ reference: trip.reference })),
        status: 409,
        message: /A trip with reference ".*" exists/,
      },
      {
        what: 'a delay of an arrived trip',
        send: () =>
          post(`/v1/trips/${arrivedTrip.id}/delays`, () => c).send({
            minutes: 5,
            reason: 'fog',
          }),
        status: 409,
        message: /has arrived; it can no longer be delayed/,
      },
      {
        what: 'a second arrival',
        send: () => post(`/v1/trips/${arrivedTrip.id}/arrival`, () => c),
        status: 409,
        message: /has already arrived/,
      },
      {
        what: 'a recover since a date in the future',
        send: () =>
          post(`/v1/endpoints/${endpoint.id}/recover`).send({ since: days(1) }),
        status: 400,
        message: /since must not be in the future/,
      },
      {
        what: 'a recover since a date more than 14 days ago',
        send: () =>
          post(`/v1/endpoints/${endpoint.id}/recover`).send({
            since: days(-30),
          }),
        status: 422,
        message: /since must be within the last 14 days/,
      },
    ])('should answer $status to $what', (bad) => expectRefused(bad));
  });

  describe('when trips with the same reference are created concurrently', () => {
    it('should create one and answer 409, not 500, to the others', async () => {
      const body = tripBody();
      const responses = await Promise.all(
        Array.from({ length: 8 }, () => post('/v1/trips', () => c).send(body)),
      );
      const statuses = responses.map((r) => r.status).sort();
      expect(statuses).toEqual([201, 409, 409, 409, 409, 409, 409, 409]);
      for (const res of responses.filter((r) => r.status === 409)) {
        expect(messageOf(res)).toBe(
          `A trip with reference "${body.reference}" exists`,
        );
      }
      const [{ count }] = await svc.dataSource.query(
        'SELECT count(*)::int AS count FROM trips WHERE account_id = $1 AND reference = $2',
        [c.id, body.reference],
      );
      expect(count).toBe(1);
    });
  });

  describe('when an endpoint URL is invalid', () => {
    it.each<BadRequest>([
      {
        what: 'a URL that is not a URL',
        send: () => post('/v1/endpoints').send({ url: 'not-a-url' }),
        status: 422,
        message: /url: URL is not a valid absolute URL/,
      },
      {
        what: 'an ftp:// URL',
        send: () =>
          post('/v1/endpoints').send({ url: 'ftp://example.com/hook' }),
        status: 422,
        message: /url: URL scheme "ftp" is not allowed; use http or https/,
      },
      {
        what: 'a URL with credentials',
        send: () =>
          post('/v1/endpoints').send({ url: 'http://user:pass@example.com/' }),
        status: 422,
        message: /url: URL must not contain credentials/,
      },
      {
        what: 'a patch to a URL with credentials',
        send: () =>
          patch(`/v1/endpoints/${endpoint.id}`).send({
            url: 'http://user:pass@127.0.0.1/',
            description: 'changed',
          }),
        status: 422,
        message: /url: URL must not contain credentials/,
      },
      {
        what: 'the cloud metadata address despite the loopback allow-list',
        send: () =>
          post('/v1/endpoints').send({ url: 'http://169.254.169.254/latest' }),
        status: 422,
        message:
          /url: URL points to 169\.254\.169\.254, a cloud metadata address/,
      },
      {
        what: 'a private address despite the loopback allow-list',
        send: () =>
          patch(`/v1/endpoints/${endpoint.id}`).send({
            url: 'http://10.0.0.1/',
          }),
        status: 422,
        message: /url: URL points to 10\.0\.0\.1, a private address/,
      },
      {
        what: 'a NAT64 address of loopback despite the loopback allow-list',
        send: () =>
          post('/v1/endpoints').send({ url: 'http://[64:ff9b::7f00:1]/' }),
        status: 422,
        message:
          /url: URL points to 64:ff9b::7f00:1 \(IPv4 127\.0\.0\.1\), a loopback address/,
      },
      {
        what: 'a 6to4 address of loopback despite the loopback allow-list',
        send: () =>
          patch(`/v1/endpoints/${endpoint.id}`).send({
            url: 'http://[2002:7f00:1::]/',
          }),
        status: 422,
        message:
          /url: URL points to 2002:7f00:1:: \(IPv4 127\.0\.0\.1\), a loopback address/,
      },
    ])('should answer $status to $what', (bad) => expectRefused(bad));
  });

  describe('when an event type is malformed', () => {
    it.each<BadRequest>(
      ['Trip Delayed', 'a..b', '.x', 'x.', ''].flatMap((type) => [
        {
          what: `the event type "${type}"`,
          send: () => post('/v1/events').send(event({ type })),
          status: 400,
          message:
            /type must be dot-separated words of letters, digits and underscores, e\.g\. "trip\.delayed"/,
        },
        {
          what: `an endpoint subscribed to "${type}"`,
          send: () =>
            post('/v1/endpoints').send({
              url: receiver.url,
              eventTypes: ['trip.delayed', type],
            }),
          status: 400,
          message: /each value in eventTypes must be dot-separated words/,
        },
      ]),
    )('should answer $status to $what', (bad) => expectRefused(bad));
  });

  describe('when the caller is not authenticated', () => {
    it.each<BadRequest>([
      {
        what: 'no Authorization header',
        send: () => api().post('/v1/trips').send(tripBody()),
        status: 401,
        message:
          /Missing Authorization header: send "Authorization: Bearer <api key>"/,
      },
      {
        what: 'an unknown API key',
        send: () =>
          api()
            .post('/v1/events')
            .set('authorization', 'Bearer whk_not-a-real-key')
            .send(event()),
        status: 401,
        message: /^Invalid API key$/,
      },
      {
        what: 'a Basic Authorization header',
        send: () =>
          api()
            .post('/v1/trips')
            .set('authorization', `Basic ${a.apiKey}`)
            .send(tripBody()),
        status: 401,
        message:
          /Malformed Authorization header: expected "Authorization: Bearer <api key>"/,
      },
      {
        what: 'a Bearer header without a key',
        send: () =>
          api()
            .post('/v1/trips')
            .set('authorization', 'Bearer ')
            .send(tripBody()),
        status: 401,
        message: /Malformed Authorization header/,
      },
      {
        what: 'a Bearer header with two keys',
        send: () =>
          api()
            .post('/v1/trips')
            .set('authorization', `Bearer ${a.apiKey} ${b.apiKey}`)
            .send(tripBody()),
        status: 401,
        message: /Malformed Authorization header/,
      },
      {
        what: 'an API key where the admin token is needed',
        send: () =>
          api().post('/v1/accounts').set(a.auth).send({ name: sneaky }),
        status: 401,
        message: /^Invalid admin token$/,
      },
      {
        what: 'an account creation without a token',
        send: () => api().post('/v1/accounts').send({ name: sneaky }),
        status: 401,
        message: /Missing Authorization header/,
      },
      {
        what: 'a read without an API key',
        send: () => api().get(`/v1/endpoints/${endpoint.id}`),
        status: 401,
        message: /Missing Authorization header/,
      },
    ])('should answer $status to $what', (bad) => expectRefused(bad));
  });

  describe('when an Idempotency-Key is misused', () => {
    it.each<BadRequest>([
      {
        what: 'a replayed key with another body',
        send: () =>
          post('/v1/trips', () => c)
            .set('idempotency-key', usedKey)
            .send(tripBody()),
        status: 422,
        message:
          /Idempotency-Key ".*" was already used with a different request within 24 h; use a new key/,
      },
      {
        what: 'a replayed key on another route',
        send: () =>
          post('/v1/events', () => c)
            .set('idempotency-key', usedKey)
            .send(event()),
        status: 422,
        message: /was already used with a different request/,
      },
      {
        what: 'a key that is too long',
        send: () =>
          post('/v1/trips').set('idempotency-key', 'k'.repeat(256)).send({}),
        status: 422,
        message: /Idempotency-Key must be 1 to 255 printable ASCII characters/,
      },
    ])('should answer $status to $what', (bad) => expectRefused(bad));
  });

  describe('when a payload is unusual but valid', () => {
    it('should keep keys named __proto__, constructor or toString, up to the webhook', async () => {
      const raw =
        '{"type": "odd.keys", "payload": {"constructor": {"prototype": 1},' +
        ' "__proto__": {"polluted": true}, "list": [{"constructor": "x"}],' +
        ' "toString": "s", "valueOf": {"hasOwnProperty": 0}, "prototype": null}}';
      const res = await json('/v1/events', raw).expect(201);
      const expected = JSON.parse(raw).payload;
      expect(res.body.payload).toEqual(expected);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      // jsonb orders keys its own way; the keys and values are all there.
      const stored = await get(`/v1/events/${res.body.id}`).expect(200);
      expect(stored.body.payload).toEqual(expected);
      expect(Object.keys(stored.body.payload).sort()).toEqual(
        Object.keys(expected).sort(),
      );
      const got = await eventually(
        () =>
          receiver.received.find(
            (r) => r.headers['webhook-id'] === res.body.id,
          ),
        'the webhook',
      );
      const data = JSON.parse(got.body).data;
      expect(data).toEqual(expected);
      expect(Object.keys(data).sort()).toEqual(Object.keys(expected).sort());
    });
  });

  describe('when a good request follows the bad ones', () => {
    it('should be accepted and queue its delivery (the checks above can see one)', async () => {
      const before = await fingerprint(svc.dataSource, [a.id]);
      watch.reset();
      const res = await post('/v1/events').send(event()).expect(201);
      expect(res.body.deliveries).toBe(1);
      expect(await fingerprint(svc.dataSource, [a.id])).not.toEqual(before);
      expect(await watch.jobsFor(svc.dataSource, [a.id])).toHaveLength(1);
    });
  });
});

describe('when an endpoint URL points into the private network', () => {
  let svc: E2eApp;
  let tenant: Tenant;

  beforeAll(async () => {
    svc = await startE2eApp({ allowSubnets: [], role: 'api' });
    tenant = await createTenant(svc, 'ssrf');
  });

  afterAll(async () => {
    await svc?.close();
  });

  it.each([
    ['http://127.0.0.1/', /URL points to 127\.0\.0\.1, a loopback address/],
    [
      'http://169.254.169.254/',
      /URL points to 169\.254\.169\.254, a cloud metadata address/,
    ],
    ['http://10.0.0.1/', /URL points to 10\.0\.0\.1, a private address/],
    [
      'http://[::ffff:127.0.0.1]/',
      /URL points to ::ffff:7f00:1 \(IPv4 127\.0\.0\.1\), a loopback address/,
    ],
    ['http://2130706433/', /URL points to 127\.0\.0\.1, a loopback address/],
    ['http://0x7f000001/', /URL points to 127\.0\.0\.1, a loopback address/],
    ['http://127.1:8080/hook', /a loopback address/],
    ['http://[::1]/', /URL points to ::1, a loopback address/],
    ['http://192.168.1.1/', /a private address/],
  ])('should refuse %s with 422 and the reason', async (url, reason) => {
    const before = await fingerprint(svc.dataSource, [tenant.id]);
    const res = await request(svc.url)
      .post('/v1/endpoints')
      .set(tenant.auth)
      .send({ url });
    expect({ status: res.status, message: messageOf(res) }).toEqual({
      status: 422,
      message: expect.stringMatching(reason),
    });
    expect(messageOf(res)).toMatch(
      /; webhook URLs must point to public addresses$/,
    );
    expect(messageOf(res)).not.toMatch(/WEBHOOK_|allow-list/);
    expect(await fingerprint(svc.dataSource, [tenant.id])).toEqual(before);
  });

  it('should not say what a host name resolves to, or whether it resolves', async () => {
    const before = await fingerprint(svc.dataSource, [tenant.id]);
    const answers = await Promise.all(
      ['localhost', 'ip6-localhost', `no-such-host-${Date.now()}.invalid`].map(
        async (host) => {
          const res = await request(svc.url)
            .post('/v1/endpoints')
            .set(tenant.auth)
            .send({ url: `http://${host}:8080/hook` });
          return [res.status, messageOf(res).replace(host, 'HOST')];
        },
      ),
    );
    expect(new Set(answers.map((a) => JSON.stringify(a)))).toEqual(
      new Set([
        JSON.stringify([
          422,
          'url: URL host "HOST" does not resolve to a public address; webhook URLs must point to public addresses',
        ]),
      ]),
    );
    expect(await fingerprint(svc.dataSource, [tenant.id])).toEqual(before);
  });
});
