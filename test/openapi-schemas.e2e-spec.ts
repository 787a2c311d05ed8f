import { randomUUID } from 'crypto';
import request, { Response } from 'supertest';
import { tripBody } from './support/api';
import {
  ADMIN_TOKEN,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import {
  HttpMethod as Method,
  OpenApiDocument,
  ResponseValidator,
} from './support/openapi-schemas';
import { Receiver, startReceiver } from './support/receiver';

/** How to call one documented operation. */
interface Call {
  /** Replaces `{id}` in the template. */
  id?: string;
  query?: string;
  auth?: string;
  body?: unknown;
}

describe('responses, validated against the OpenAPI document', () => {
  let svc: E2eApp;
  /** Answers 200: the deliveries that succeed. */
  let receiver: Receiver;
  /** Answers 500: the deliveries that fail, to be retried and recovered. */
  let failing: Receiver;
  let doc: OpenApiDocument;
  let validator: ResponseValidator;

  /** Sends the call to `method template` and checks the response against the document. */
  const send = async (
    method: Method,
    template: string,
    { id, query, auth, body }: Call = {},
  ): Promise<Response> => {
    const path = `${template.replace('{id}', id ?? '')}${query ? `?${query}` : ''}`;
    const req = request(svc.url)[method](path);
    if (auth) req.set('authorization', auth);
    const res = await (body === undefined ? req : req.send(body as object));
    validator.check(method, template, res);
    return res;
  };

  /** Gets a first page of `limit` items (it must not be the last), then the next one. */
  const twoPages = async (
    template: string,
    { limit = 1, query, ...call }: Call & { limit?: number } = {},
  ): Promise<Response> => {
    const first = await send('get', template, {
      ...call,
      query: `limit=${limit}`,
    });
    expect(first.body.nextCursor).toEqual(expect.any(String));
    const and = query ? `${query}&` : '';
    await send('get', template, {
      ...call,
      query: `${and}cursor=${first.body.nextCursor}`,
    });
    return first;
  };

  beforeAll(async () => {
    svc = await startE2eApp();
    receiver = await startReceiver();
    failing = await startReceiver((_n, _r, res) => {
      res.statusCode = 500;
      res.end('down for maintenance');
    });
    doc = (await request(svc.url).get('/docs-json').expect(200)).body;
    validator = new ResponseValidator(doc);
  });

  afterAll(async () => {
    await svc?.close();
    await receiver?.close();
    await failing?.close();
  });

  it('should reject a body with an undocumented member, a missing one or a wrong type', () => {
    const strict = new ResponseValidator(doc);
    const trip = {
      id: randomUUID(),
      reference: 'T-1',
      origin: 'Lyon',
      destination: 'Turin',
      status: 'scheduled',
      plannedArrival: '2026-12-01T10:00:00.000Z',
      expectedArrival: '2026-12-01T10:00:00.000Z',
      delayMinutesTotal: 0,
      createdAt: '2026-11-01T10:00:00.000Z',
      updatedAt: '2026-11-01T10:00:00.000Z',
    };
    const answer = (body: unknown) =>
      ({
        status: 200,
        headers: { 'content-type': 'application/json; charset=utf-8' },
        body,
        text: JSON.stringify(body),
      }) as unknown as Response;
    strict.check('get', '/v1/trips/{id}', answer(trip));
    expect(strict.problems).toEqual([]);
    const withoutOrigin: Partial<typeof trip> = { ...trip };
    delete withoutOrigin.origin;
    strict.check('get', '/v1/trips/{id}', answer({ ...trip, accountId: 'x' }));
    strict.check('get', '/v1/trips/{id}', answer(withoutOrigin));
    strict.check('get', '/v1/trips/{id}', answer({ ...trip, status: 'lost' }));
    strict.check(
      'get',
      '/v1/trips/{id}',
      answer({ ...trip, plannedArrival: 'tomorrow' }),
    );
    // Nullable members take null, and nothing else but their type.
    strict.check(
      'get',
      '/v1/endpoints/{id}/secret',
      answer({ secret: 'whsec_x', extra: null }),
    );
    expect(strict.problems).toEqual([
      'GET /v1/trips/{id} 200: / must NOT have additional properties (accountId)',
      "GET /v1/trips/{id} 200: / must have required property 'origin'",
      'GET /v1/trips/{id} 200: /status must be equal to one of the allowed values',
      'GET /v1/trips/{id} 200: /plannedArrival must match format "date-time"',
      'GET /v1/endpoints/{id}/secret 200: / must NOT have additional properties (extra)',
    ]);
  });

  it('should answer every request of a realistic flow as documented', async () => {
    const admin = `Bearer ${ADMIN_TOKEN}`;
    const missing = randomUUID();

    // Accounts (admin token).
    const account = await send('post', '/v1/accounts', {
      auth: admin,
      body: { name: 'openapi-schemas' },
    });
    expect(account.status).toBe(201);
    const key = `Bearer ${account.body.apiKey}`;
    await send('post', '/v1/accounts', { auth: admin, body: { name: '' } });
    await send('post', '/v1/accounts', {
      auth: 'Bearer wrong',
      body: { name: 'x' },
    });

    // Endpoints: one for every type, one that fails, one to change and delete.
    const ok = await send('post', '/v1/endpoints', {
      auth: key,
      body: { url: receiver.url },
    });
    expect(ok.status).toBe(201);
    const bad = await send('post', '/v1/endpoints', {
      auth: key,
      body: {
        url: failing.url,
        eventTypes: ['parcel.lost'],
        description: 'always 500',
      },
    });
    expect(bad.status).toBe(201);
    const spare = await send('post', '/v1/endpoints', {
      auth: key,
      body: { url: receiver.url, eventTypes: ['nothing.ever'] },
    });
    await send('post', '/v1/endpoints', {
      auth: key,
      body: { url: 'https://10.0.0.1/hook' },
    });
    await send('post', '/v1/endpoints', { auth: key, body: { url: 42 } });
    await send('post', '/v1/endpoints', { body: { url: receiver.url } });
    await twoPages('/v1/endpoints', { auth: key, limit: 2 });
    await send('get', '/v1/endpoints', { auth: key, query: 'limit=0' });
    for (const id of [spare.body.id, missing])
      for (const [method, template, body] of [
        ['get', '/v1/endpoints/{id}'],
        ['get', '/v1/endpoints/{id}/secret'],
        ['patch', '/v1/endpoints/{id}', { description: 'spare' }],
        ['patch', '/v1/endpoints/{id}', { eventTypes: ['still.nothing'] }],
        ['post', '/v1/endpoints/{id}/rotate-secret'],
        ['post', '/v1/endpoints/{id}/enable'],
      ] as [Method, string, unknown?][])
        await send(method, template, { id, auth: key, body });
    await send('get', '/v1/endpoints/{id}', { id: 'not-a-uuid', auth: key });

    // A trip, its delay (event and delivery in one transaction) and arrival.
    const trip = await send('post', '/v1/trips', {
      auth: key,
      body: tripBody(),
    });
    expect(trip.status).toBe(201);
    await send('post', '/v1/trips', {
      auth: key,
      body: tripBody({ reference: trip.body.reference }),
    });
    await send('post', '/v1/trips', { auth: key, body: { reference: '' } });
    await send('get', '/v1/trips/{id}', { id: trip.body.id, auth: key });
    await send('get', '/v1/trips/{id}', { id: missing, auth: key });
    const delayed = await send('post', '/v1/trips/{id}/delays', {
      id: trip.body.id,
      auth: key,
      body: { minutes: 25, reason: 'snow on the pass' },
    });
    expect(delayed.status).toBe(201);
    await send('post', '/v1/trips/{id}/delays', {
      id: trip.body.id,
      auth: key,
      body: { minutes: 0, reason: 'x' },
    });
    // Arrived, then already arrived.
    for (const status of [200, 409]) {
      const arrival = await send('post', '/v1/trips/{id}/arrival', {
        id: trip.body.id,
        auth: key,
      });
      expect(arrival.status).toBe(status);
    }

    // A generic event, delivered to `ok` (succeeds) and `bad` (fails every attempt).
    const event = await send('post', '/v1/events', {
      auth: key,
      body: { type: 'parcel.lost', payload: { parcel: 'P-1', weight: 1.5 } },
    });
    expect(event.body.deliveries).toBe(2);
    await send('post', '/v1/events', {
      auth: key,
      body: { type: 'bad type', payload: {} },
    });
    await send('get', '/v1/events/{id}', { id: event.body.id, auth: key });
    await send('get', '/v1/events/{id}', { id: missing, auth: key });
    await twoPages('/v1/events', {
      auth: key,
      query: `type=trip.delayed&tripId=${trip.body.id}`,
    });
    // The delivery log, once both deliveries are final (with every attempt recorded).
    await eventually(async () => {
      const res = await request(svc.url)
        .get(`/v1/events/${event.body.id}/deliveries`)
        .set('authorization', key);
      const data: { status: string }[] = res.body.data ?? [];
      return (
        data.length === 2 &&
        data.every((d) => d.status === 'succeeded' || d.status === 'failed')
      );
    }, 'both deliveries to be final');
    const log = await send('get', '/v1/events/{id}/deliveries', {
      id: event.body.id,
      auth: key,
    });
    const failed = log.body.data.find(
      (d: { endpointId: string }) => d.endpointId === bad.body.id,
    );
    expect(failed).toMatchObject({ status: 'failed' });
    expect(failed.attempts.length).toBeGreaterThan(1);
    await twoPages('/v1/events/{id}/deliveries', {
      id: event.body.id,
      auth: key,
    });
    await send('get', '/v1/events/{id}/deliveries', { id: missing, auth: key });

    // Deliveries: lists, one delivery, its attempts page by page, recover and retry.
    await twoPages('/v1/deliveries', {
      auth: key,
      query: `status=failed&endpointId=${bad.body.id}`,
    });
    await send('get', '/v1/deliveries', { auth: key, query: 'status=lost' });
    await send('get', '/v1/deliveries/{id}', { id: failed.id, auth: key });
    await send('get', '/v1/deliveries/{id}', { id: missing, auth: key });
    await twoPages('/v1/deliveries/{id}/attempts', {
      id: failed.id,
      auth: key,
    });
    await send('get', '/v1/deliveries/{id}/attempts', {
      id: missing,
      auth: key,
    });
    const recovered = await send('post', '/v1/endpoints/{id}/recover', {
      id: bad.body.id,
      auth: key,
      body: { since: new Date(Date.now() - 60_000).toISOString() },
    });
    expect(recovered.body.queued).toBeGreaterThanOrEqual(1);
    for (const body of [{ since: '2020-01-01T00:00:00Z' }, {}])
      await send('post', '/v1/endpoints/{id}/recover', {
        id: bad.body.id,
        auth: key,
        body,
      });
    const retry = await send('post', '/v1/deliveries/{id}/retry', {
      id: failed.id,
      auth: key,
    });
    expect(retry.status).toBe(202);
    await send('post', '/v1/deliveries/{id}/retry', { id: missing, auth: key });
    // The manual attempts, in progress or done, as the log shows them now.
    await send('get', '/v1/events/{id}/deliveries', {
      id: event.body.id,
      auth: key,
    });

    await send('delete', '/v1/endpoints/{id}', {
      id: spare.body.id,
      auth: key,
    });
    await send('delete', '/v1/endpoints/{id}', { id: missing, auth: key });

    // Health (anyone; details with the admin token) and metrics (admin token).
    for (const auth of [undefined, admin])
      for (const template of ['/health', '/health/live', '/health/ready'])
        await send('get', template, { auth });
    await send('get', '/metrics', { auth: admin });
    await send('get', '/metrics');

    expect(validator.problems).toEqual([]);
  });

  it('should have checked every documented success response against a real one', () => {
    expect(validator.unchecked(/^2/)).toEqual([]);
  });
});
