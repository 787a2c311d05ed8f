import { randomUUID } from 'crypto';
import request from 'supertest';
import {
  ADMIN_TOKEN,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import type { HttpMethod as Method } from './support/openapi-schemas';
import { Receiver, startReceiver } from './support/receiver';
import { blockTheLoop } from './support/busy-loop';
import { EventLoopPressure } from '../src/load-shedding/event-loop-pressure';

/** One request this spec makes: the documented operation it exercises, and how. */
interface Call {
  method: Method;
  /** The path template as the document writes it (`{id}`). */
  template: string;
  /** The concrete path. */
  path: string;
  auth?: string;
  body?: unknown;
}

/** Every route Nest's router serves (express layers), as `METHOD /path/{param}`. */
function routerRoutes(svc: E2eApp): string[] {
  const express = svc.app.getHttpAdapter().getInstance() as {
    router: {
      stack: {
        route?: { path: string; methods: Record<string, boolean> };
      }[];
    };
  };
  const routes = new Set<string>();
  for (const layer of express.router.stack) {
    if (!layer.route) continue;
    const path = layer.route.path.replace(/:(\w+)/g, '{$1}');
    // Swagger UI's own routes are not part of the API, nor are the catch-alls Nest adds for
    // middleware applied to every path (logging, metrics, the worker's route filter).
    if (path === '/docs' || path.startsWith('/docs')) continue;
    // Catch-all fallbacks (`app.all('*')`: unmatched routes answer 404) are not API routes.
    if (path.includes('*')) continue;
    for (const [method, on] of Object.entries(layer.route.methods))
      if (on && method !== '_all')
        routes.add(`${method.toUpperCase()} ${path}`);
  }
  return [...routes].sort();
}

describe('the OpenAPI document', () => {
  let svc: E2eApp;
  let limited: E2eApp;
  let receiver: Receiver;
  let doc: {
    paths: Record<
      string,
      Record<
        string,
        { responses: Record<string, unknown>; security?: unknown[] }
      >
    >;
    components: {
      securitySchemes: Record<string, unknown>;
      schemas: Record<string, unknown>;
    };
  };

  beforeAll(async () => {
    svc = await startE2eApp({ healthOutboxMaxAgeMs: 60_000 });
    // The same service with a limit of one request per account and minute: drives the 429s.
    limited = await startE2eApp({ rateLimit: { limit: 1, windowMs: 60_000 } });
    receiver = await startReceiver();
    doc = (await request(svc.url).get('/docs-json').expect(200)).body;
  });

  afterAll(async () => {
    await limited?.close();
    await svc?.close();
    await receiver?.close();
  });

  it('should serve Swagger UI at /docs', async () => {
    const res = await request(svc.url).get('/docs').redirects(1).expect(200);
    expect(res.headers['content-type']).toMatch(/text\/html/);
    expect(res.text).toContain('swagger-ui');
  });

  it('should document every route Nest serves, and no other', () => {
    const documented = Object.entries(doc.paths)
      .flatMap(([path, ops]) =>
        Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`),
      )
      .sort();
    const served = routerRoutes(svc);
    expect(served.length).toBeGreaterThan(20);
    expect(documented).toEqual(served);
  });

  it('should declare the auth schemes, the error shape, pagination and request bodies from the DTOs', () => {
    expect(doc.components.securitySchemes).toEqual({
      'api-key': expect.objectContaining({ type: 'http', scheme: 'bearer' }),
      'admin-token': expect.objectContaining({
        type: 'http',
        scheme: 'bearer',
      }),
    });
    expect(doc.paths['/v1/accounts'].post.security).toEqual([
      { 'admin-token': [] },
    ]);
    expect(doc.paths['/v1/trips'].post.security).toEqual([{ 'api-key': [] }]);
    expect(doc.components.schemas.ErrorResponseDto).toMatchObject({
      required: expect.arrayContaining(['statusCode', 'message']),
    });
    expect(doc.components.schemas.ReportDelayDto).toMatchObject({
      required: ['minutes', 'reason'],
      properties: { minutes: { minimum: 1, maximum: 43200 } },
    });
    const list = doc.paths['/v1/events'].get as unknown as {
      parameters: { name: string }[];
      responses: Record<
        string,
        { content: Record<string, { schema: unknown }> }
      >;
    };
    expect(list.parameters.map((p) => p.name)).toEqual(
      expect.arrayContaining(['limit', 'cursor', 'type', 'since']),
    );
    expect(
      list.responses['200'].content['application/json'].schema,
    ).toMatchObject({
      required: ['data', 'nextCursor'],
    });
  });

  it('should describe every success body with a response DTO (pages: their items)', () => {
    const free: string[] = [];
    for (const [path, ops] of Object.entries(doc.paths))
      for (const [method, op] of Object.entries(ops))
        for (const [status, response] of Object.entries(op.responses)) {
          if (!status.startsWith('2')) continue;
          const content = (
            response as {
              content?: Record<
                string,
                {
                  schema: {
                    $ref?: string;
                    type?: string;
                    properties?: { data?: { items?: { $ref?: string } } };
                  };
                }
              >;
            }
          ).content;
          // 204s and the metrics text have no JSON body.
          const schema = content?.['application/json']?.schema;
          if (!schema) continue;
          const ref = schema.$ref ?? schema.properties?.data?.items?.$ref;
          if (!ref?.endsWith('ResponseDto') && !ref?.endsWith('AccountDto'))
            free.push(`${method.toUpperCase()} ${path} ${status}`);
        }
    expect(free).toEqual([]);
    expect(doc.paths['/v1/deliveries'].get.responses['200']).toMatchObject({
      content: {
        'application/json': {
          schema: {
            required: ['data', 'nextCursor'],
            properties: {
              data: {
                items: { $ref: '#/components/schemas/DeliveryResponseDto' },
              },
            },
          },
        },
      },
    });
  });

  it('should have every documented response code produced by a request', async () => {
    const admin = `Bearer ${ADMIN_TOKEN}`;
    const key = `Bearer ${await svc.createAccount('openapi')}`;
    const call = (c: Call, base = svc.url) => {
      const r = request(base)[c.method](c.path);
      if (c.auth) r.set('authorization', c.auth);
      return c.body === undefined ? r : r.send(c.body as object);
    };
    const seen = new Map<string, Set<number>>();
    const record = async (c: Call, base?: string) => {
      const res = await call(c, base);
      const op = `${c.method.toUpperCase()} ${c.template}`;
      if (!seen.has(op)) seen.set(op, new Set());
      seen.get(op)!.add(res.status);
      return res;
    };

    // Fixtures.
    const endpoint = (
      await record({
        method: 'post',
        template: '/v1/endpoints',
        path: '/v1/endpoints',
        auth: key,
        body: { url: receiver.url },
      })
    ).body;
    const trip = (
      await record({
        method: 'post',
        template: '/v1/trips',
        path: '/v1/trips',
        auth: key,
        body: {
          reference: 'OA-1',
          origin: 'Lyon',
          destination: 'Turin',
          plannedArrival: '2026-12-01T10:00:00Z',
        },
      })
    ).body;
    const event = (
      await record({
        method: 'post',
        template: '/v1/events',
        path: '/v1/events',
        auth: key,
        body: { type: 'parcel.scanned', payload: { n: 1 } },
      })
    ).body;
    const delivery = await eventually(async () => {
      const res = await call({
        method: 'get',
        template: '',
        path: `/v1/events/${event.id}/deliveries`,
        auth: key,
      });
      return res.body.data?.[0];
    }, 'the delivery');

    const missing = randomUUID();
    const ids = (template: string, id: string) => template.replace('{id}', id);
    const byId: [Method, string, unknown?][] = [
      ['get', '/v1/endpoints/{id}'],
      ['get', '/v1/endpoints/{id}/secret'],
      ['patch', '/v1/endpoints/{id}', { description: 'x' }],
      ['post', '/v1/endpoints/{id}/rotate-secret'],
      ['post', '/v1/endpoints/{id}/enable'],
      [
        'post',
        '/v1/endpoints/{id}/recover',
        { since: new Date(Date.now() - 60_000).toISOString() },
      ],
      ['get', '/v1/events/{id}'],
      ['get', '/v1/events/{id}/deliveries'],
      ['get', '/v1/trips/{id}'],
      ['post', '/v1/trips/{id}/delays', { minutes: 5, reason: 'traffic' }],
      ['post', '/v1/trips/{id}/arrival'],
      ['get', '/v1/deliveries/{id}'],
      ['get', '/v1/deliveries/{id}/attempts'],
      ['post', '/v1/deliveries/{id}/retry'],
      ['delete', '/v1/endpoints/{id}'],
    ];
    const owner = (template: string) =>
      template.startsWith('/v1/endpoints')
        ? endpoint.id
        : template.startsWith('/v1/events')
          ? event.id
          : template.startsWith('/v1/trips')
            ? trip.id
            : delivery.id;
    // 404 on an unknown id, then the success code on the fixture (delete last).
    for (const [method, template, body] of byId) {
      await record({
        method,
        template,
        path: ids(template, missing),
        auth: key,
        body,
      });
      await record({
        method,
        template,
        path: ids(template, owner(template)),
        auth: key,
        body,
      });
    }
    const lists = ['/v1/endpoints', '/v1/events', '/v1/deliveries'];
    for (const path of lists) {
      await record({ method: 'get', template: path, path, auth: key });
      await record({
        method: 'get',
        template: path,
        path: `${path}?limit=0`,
        auth: key,
      });
    }
    // 400s: bad bodies and bad ids.
    const bad: Call[] = [
      {
        method: 'post',
        template: '/v1/accounts',
        path: '/v1/accounts',
        auth: admin,
        body: { name: '' },
      },
      {
        method: 'post',
        template: '/v1/endpoints',
        path: '/v1/endpoints',
        auth: key,
        body: { url: 42 },
      },
      {
        method: 'get',
        template: '/v1/endpoints/{id}',
        path: '/v1/endpoints/not-a-uuid',
        auth: key,
      },
      {
        method: 'patch',
        template: '/v1/endpoints/{id}',
        path: `/v1/endpoints/${missing}`,
        auth: key,
        body: { url: 42 },
      },
      {
        method: 'post',
        template: '/v1/endpoints/{id}/recover',
        path: `/v1/endpoints/${missing}/recover`,
        auth: key,
        body: {},
      },
      {
        method: 'post',
        template: '/v1/events',
        path: '/v1/events',
        auth: key,
        body: { type: 'bad type', payload: {} },
      },
      {
        method: 'post',
        template: '/v1/trips',
        path: '/v1/trips',
        auth: key,
        body: { reference: '' },
      },
      {
        method: 'post',
        template: '/v1/trips/{id}/delays',
        path: `/v1/trips/${trip.id}/delays`,
        auth: key,
        body: { minutes: 0, reason: 'x' },
      },
    ];
    for (const c of bad) await record(c);
    // 409s, 422s, the admin route's 201 and 401.
    await record({
      method: 'post',
      template: '/v1/trips',
      path: '/v1/trips',
      auth: key,
      body: {
        reference: 'OA-1',
        origin: 'Lyon',
        destination: 'Turin',
        plannedArrival: '2026-12-01T10:00:00Z',
      },
    });
    await record({
      method: 'post',
      template: '/v1/trips/{id}/arrival',
      path: `/v1/trips/${trip.id}/arrival`,
      auth: key,
    });
    await record({
      method: 'post',
      template: '/v1/endpoints',
      path: '/v1/endpoints',
      auth: key,
      body: { url: 'https://10.0.0.1/hook' },
    });
    const newEndpoint = (
      await call({
        method: 'post',
        template: '',
        path: '/v1/endpoints',
        auth: key,
        body: { url: receiver.url },
      })
    ).body;
    // Rotations until 50 rotated-out secrets sign at once: the next one is refused (409).
    let rotated;
    for (let i = 0; i <= 50; i++) {
      rotated = await record({
        method: 'post',
        template: '/v1/endpoints/{id}/rotate-secret',
        path: `/v1/endpoints/${newEndpoint.id}/rotate-secret`,
        auth: key,
      });
    }
    expect(rotated!.status).toBe(409);
    expect(rotated!.body.message).toMatch(/next rotation is possible at/);
    await record({
      method: 'post',
      template: '/v1/endpoints/{id}/recover',
      path: `/v1/endpoints/${newEndpoint.id}/recover`,
      auth: key,
      body: { since: '2020-01-01T00:00:00Z' },
    });
    await record({
      method: 'post',
      template: '/v1/accounts',
      path: '/v1/accounts',
      auth: admin,
      body: { name: 'n' },
    });
    await record({
      method: 'post',
      template: '/v1/accounts',
      path: '/v1/accounts',
      auth: 'Bearer wrong-admin-token',
      body: { name: 'n' },
    });

    // 401 (no key) on every API-key route; 429 on every one for an account past its limit.
    const limitedKey = `Bearer ${await limited.createAccount('limited')}`;
    await call(
      { method: 'get', template: '', path: '/v1/endpoints', auth: limitedKey },
      limited.url,
    ).expect(200);
    for (const [path, ops] of Object.entries(doc.paths)) {
      if (!path.startsWith('/v1/') || path === '/v1/accounts') continue;
      for (const method of Object.keys(ops) as Method[]) {
        const concrete = ids(path, missing);
        await record({ method, template: path, path: concrete });
        await record(
          { method, template: path, path: concrete, auth: limitedKey },
          limited.url,
        );
      }
    }

    // 503 on the routes that create events, from an app whose event loop is kept busy.
    const shedding = await startE2eApp({ shedLoopUtilization: 80 });
    try {
      const shedKey = `Bearer ${await shedding.createAccount('shed')}`;
      const unblock = blockTheLoop(80);
      try {
        const pressure = shedding.app.get(EventLoopPressure);
        await eventually(() => pressure.overloaded, 'the loop to be busy');
        for (const [path, ops] of Object.entries(doc.paths)) {
          for (const [method, op] of Object.entries(ops)) {
            if (!path.startsWith('/v1/') || !op.responses['503']) continue;
            await record(
              {
                method: method as Method,
                template: path,
                path: ids(path, missing),
                auth: shedKey,
              },
              shedding.url,
            );
          }
        }
      } finally {
        unblock();
      }
    } finally {
      await shedding.close();
    }

    // Metrics: the admin token, or 401.
    await record({
      method: 'get',
      template: '/metrics',
      path: '/metrics',
      auth: admin,
    });
    await record({ method: 'get', template: '/metrics', path: '/metrics' });

    // Health: live, ready and summary; ready 503 while the outbox holds a stuck row.
    for (const template of ['/health', '/health/live', '/health/ready'])
      await record({ method: 'get', template, path: template });
    await svc.dataSource.query(
      `INSERT INTO transactional_outbox (id, queue, job_name, data, opts, created_at, available_at)
       VALUES ('openapi-stuck', 'nowhere', 'x', '{}', '{}', clock_timestamp() - interval '2 minutes', clock_timestamp() + interval '1 hour')`,
    );
    try {
      await record({
        method: 'get',
        template: '/health/ready',
        path: '/health/ready',
      });
    } finally {
      await svc.dataSource.query(
        `DELETE FROM transactional_outbox WHERE id = 'openapi-stuck'`,
      );
    }

    const unproduced: string[] = [];
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const key2 = `${method.toUpperCase()} ${path}`;
        for (const code of Object.keys(op.responses))
          if (!seen.get(key2)?.has(Number(code)))
            unproduced.push(`${key2} ${code}`);
      }
    }
    expect(unproduced).toEqual([]);
    // And the other way round: no status this spec saw is undocumented.
    const undocumented: string[] = [];
    for (const [op, statuses] of seen) {
      const [method, path] = op.split(' ');
      const responses =
        doc.paths[path]?.[method.toLowerCase()]?.responses ?? {};
      for (const status of statuses)
        if (!(String(status) in responses))
          undocumented.push(`${op} ${status}`);
    }
    expect(undocumented).toEqual([]);
  });
});
