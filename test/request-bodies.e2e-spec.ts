import { randomUUID } from 'crypto';
import { request as httpRequest } from 'http';
import { connect } from 'net';
import request, { Test } from 'supertest';
import { Webhook } from 'standardwebhooks';
import { JsonBodyGuard } from '../src/http/json-body.guard';
import {
  Tenant,
  createTenant,
  fingerprint,
  messageOf,
  tripBody,
} from './support/api';
import {
  ADMIN_TOKEN,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

/** One route that takes a JSON body, and a valid body for it. */
interface BodyRoute {
  name: string;
  method: 'post' | 'patch';
  path: () => string;
  auth: () => Record<string, string>;
  body: () => Record<string, unknown>;
}

/** A POST whose headers may repeat (an array value is sent as several headers). */
function rawPost(
  base: string,
  path: string,
  headers: Record<string, string | string[]>,
  body: string,
): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(path, base), { method: 'POST' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: JSON.parse(Buffer.concat(chunks).toString()),
        }),
      );
    });
    for (const [name, value] of Object.entries(headers)) {
      req.setHeader(name, value);
    }
    req.on('error', reject);
    req.end(body);
  });
}

/** The byte forms of a JSON text, with the Content-Type each is sent with. */
const ENCODINGS: {
  name: string;
  contentType: string;
  encode: (text: string) => Buffer;
}[] = [
  {
    name: 'UTF-8 with a byte order mark',
    contentType: 'application/json',
    encode: (t) => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), utf8(t)]),
  },
  {
    name: 'UTF-8 with a BOM, declared',
    contentType: 'application/json; charset=UTF-8',
    encode: (t) => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), utf8(t)]),
  },
  {
    name: 'UTF-16LE, declared',
    contentType: 'application/json; charset=utf-16le',
    encode: (t) => Buffer.from(t, 'utf16le'),
  },
  {
    name: 'UTF-16LE with a BOM, declared',
    contentType: 'application/json; charset="utf-16le"',
    encode: (t) => Buffer.from(`\uFEFF${t}`, 'utf16le'),
  },
  {
    name: 'UTF-16BE, declared',
    contentType: 'application/json; charset=utf-16be',
    encode: (t) => utf16be(t),
  },
  {
    name: 'UTF-16BE with a BOM, declared as utf-16',
    contentType: 'application/json; charset=utf-16',
    encode: (t) => utf16be(`\uFEFF${t}`),
  },
  {
    name: 'UTF-16LE with a BOM, declared as utf-16',
    contentType: 'application/json; charset=utf-16',
    encode: (t) => Buffer.from(`\uFEFF${t}`, 'utf16le'),
  },
  {
    name: 'UTF-16LE with a BOM, undeclared',
    contentType: 'application/json',
    encode: (t) => Buffer.from(`\uFEFF${t}`, 'utf16le'),
  },
];

function utf8(text: string): Buffer {
  return Buffer.from(text, 'utf8');
}

function utf16be(text: string): Buffer {
  return Buffer.from(text, 'utf16le').swap16();
}

describe('when request bodies come in other encodings or shapes', () => {
  let svc: E2eApp;
  let receiver: Receiver;
  let tenant: Tenant;
  let endpointId: string;
  let tripId: string;

  beforeAll(async () => {
    svc = await startE2eApp();
    receiver = await startReceiver();
    tenant = await createTenant(svc, 'bodies');
    endpointId = (
      await request(svc.url)
        .post('/v1/endpoints')
        .set(tenant.auth)
        .send({ url: receiver.url })
        .expect(201)
    ).body.id;
    tripId = (
      await request(svc.url)
        .post('/v1/trips')
        .set(tenant.auth)
        .send(tripBody())
        .expect(201)
    ).body.id;
  });

  afterAll(async () => {
    await receiver?.close();
    await svc?.close();
  });

  const admin = () => ({ authorization: `Bearer ${ADMIN_TOKEN}` });

  /** The tenant's fingerprint once none of its deliveries is in flight any more. */
  const settledFingerprint = async () => {
    await eventually(async () => {
      const [{ busy }] = await svc.dataSource.query(
        `SELECT count(*)::int AS busy FROM deliveries
          WHERE account_id = $1 AND status IN ('pending', 'sending')`,
        [tenant.id],
      );
      return busy === 0;
    }, 'the deliveries to settle');
    return fingerprint(svc.dataSource, [tenant.id]);
  };
  const ROUTES: BodyRoute[] = [
    {
      name: 'POST /v1/accounts',
      method: 'post',
      path: () => '/v1/accounts',
      auth: admin,
      body: () => ({ name: `charset-${randomUUID()}` }),
    },
    {
      name: 'POST /v1/endpoints',
      method: 'post',
      path: () => '/v1/endpoints',
      auth: () => tenant.auth,
      body: () => ({ url: receiver.url, description: 'né à Zürich ☃ 𝄞' }),
    },
    {
      name: 'PATCH /v1/endpoints/:id',
      method: 'patch',
      path: () => `/v1/endpoints/${endpointId}`,
      auth: () => tenant.auth,
      body: () => ({ description: `é ${randomUUID()}` }),
    },
    {
      name: 'POST /v1/endpoints/:id/recover',
      method: 'post',
      path: () => `/v1/endpoints/${endpointId}/recover`,
      auth: () => tenant.auth,
      body: () => ({ since: new Date(Date.now() - 60_000).toISOString() }),
    },
    {
      name: 'POST /v1/trips',
      method: 'post',
      path: () => '/v1/trips',
      auth: () => tenant.auth,
      body: () => tripBody({ origin: 'Zürich', destination: '東京' }),
    },
    {
      name: 'POST /v1/trips/:id/delays',
      method: 'post',
      path: () => `/v1/trips/${tripId}/delays`,
      auth: () => tenant.auth,
      body: () => ({ minutes: 5, reason: 'neige ❄' }),
    },
    {
      name: 'POST /v1/events',
      method: 'post',
      path: () => '/v1/events',
      auth: () => tenant.auth,
      body: () => ({ type: 'parcel.scanned', payload: { at: 'Zürich ☃' } }),
    },
  ];

  const send = (route: BodyRoute, contentType: string, bytes: Buffer): Test =>
    request(svc.url)
      [route.method](route.path())
      .set(route.auth())
      .set('content-type', contentType)
      // NOTE: superagent would serialise a Buffer as JSON for a JSON Content-Type.
      .serialize((raw: Buffer) => raw as unknown as string)
      .send(bytes);

  describe.each(ROUTES)('when $name gets a body', (route) => {
    it.each(ENCODINGS)(
      'should read $name as it reads UTF-8',
      async ({ contentType, encode }) => {
        const body = route.body();
        const res = await send(
          route,
          contentType,
          encode(JSON.stringify(body)),
        );
        expect(res.status).toBeGreaterThanOrEqual(200);
        expect(res.status).toBeLessThan(300);
        for (const [key, value] of Object.entries(body)) {
          if (
            typeof value === 'string' &&
            key !== 'plannedArrival' &&
            key in res.body
          ) {
            expect(res.body[key]).toBe(value);
          }
        }
      },
    );

    it.each([
      ['charset=latin1', 'application/json; charset=latin1', 415],
      ['charset=utf-32', 'application/json; charset=utf-32', 415],
      ['charset=nonsense', 'application/json; charset=x-foo', 415],
    ])(
      'should refuse %s with 415 and change nothing',
      async (_w, type, status) => {
        const before = await settledFingerprint();
        const res = await send(route, type, utf8(JSON.stringify(route.body())));
        expect({ status: res.status, message: messageOf(res) }).toEqual({
          status,
          message: expect.stringMatching(
            /Unsupported charset .*send UTF-8 JSON/,
          ),
        });
        expect(await fingerprint(svc.dataSource, [tenant.id])).toEqual(before);
      },
    );

    it.each([
      [
        'a charset declared twice',
        'application/json; charset=utf-8; charset=latin1',
        /declares the charset parameter more than once/,
      ],
      [
        'an unterminated quoted parameter',
        'application/json; profile="x; charset=utf-8',
        /is malformed: the quoted value of "profile" is not closed/,
      ],
      [
        'a parameter without a value',
        'application/json; charset',
        /is malformed: parameter "charset" has no value/,
      ],
    ])(
      'should refuse %s with 400 and change nothing',
      async (_w, type, message) => {
        const before = await settledFingerprint();
        const res = await send(route, type, utf8(JSON.stringify(route.body())));
        expect({ status: res.status, message: messageOf(res) }).toEqual({
          status: 400,
          message: expect.stringMatching(message),
        });
        expect(await fingerprint(svc.dataSource, [tenant.id])).toEqual(before);
      },
    );

    it.each([
      [
        'bytes that are not UTF-8',
        'application/json',
        Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]),
        /not valid UTF-8/,
      ],
      [
        'UTF-16LE declared, with an odd number of bytes',
        'application/json; charset=utf-16le',
        Buffer.concat([Buffer.from('{}', 'utf16le'), Buffer.from([0x20])]),
        /not valid UTF-16LE/,
      ],
      [
        'UTF-16BE declared, with a lone surrogate',
        'application/json; charset=utf-16be',
        Buffer.from([0x00, 0x7b, 0xd8, 0x00, 0x00, 0x7d]),
        /not valid UTF-16BE/,
      ],
      [
        'a UTF-16 BOM with UTF-8 declared',
        'application/json; charset=utf-8',
        Buffer.from('\uFEFF{}', 'utf16le'),
        /not valid UTF-8/,
      ],
    ])(
      'should refuse %s with 400 and change nothing',
      async (_w, type, bytes, message) => {
        const before = await settledFingerprint();
        const res = await send(route, type, bytes);
        expect({ status: res.status, message: messageOf(res) }).toEqual({
          status: 400,
          message: expect.stringMatching(message),
        });
        expect(await fingerprint(svc.dataSource, [tenant.id])).toEqual(before);
      },
    );

    it.each(['__proto__', 'constructor', 'prototype', 'toString', 'valueOf'])(
      'should refuse a top-level %s key with 400 naming it',
      async (key) => {
        const before = await settledFingerprint();
        const text = `{"${key}": {"x": 1}, ${JSON.stringify(route.body()).slice(1)}`;
        const res = await send(route, 'application/json', utf8(text));
        expect({ status: res.status, message: messageOf(res) }).toEqual({
          status: 400,
          message: `Invalid JSON body: property ${key} should not exist`,
        });
        expect(await fingerprint(svc.dataSource, [tenant.id])).toEqual(before);
      },
    );
  });

  describe('when an event payload is written in an unusual way', () => {
    const payload =
      '{ "z" : 1,"a":[1.50, 1e400, 12345678901234567890, -0.0],\n' +
      '  "__proto__": {"polluted": true}, "constructor": {"prototype": 1},' +
      ' "toString": "s", "dup": 1, "dup": 2, "esc": "\\u00e9\\ud834\\udd1e\\/" }';

    it('should store, return and deliver it byte for byte', async () => {
      const own = await createTenant(svc, 'payloads');
      const endpoint = await request(svc.url)
        .post('/v1/endpoints')
        .set(own.auth)
        .send({ url: receiver.url })
        .expect(201);
      const raw = `{"type": "odd.payload", "payload": ${payload}}`;
      const created = await request(svc.url)
        .post('/v1/events')
        .set(own.auth)
        .set('content-type', 'application/json')
        .send(raw)
        .expect(201);
      expect(created.text).toContain(`"payload":${payload},`);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      const id = created.body.id;

      const read = await request(svc.url)
        .get(`/v1/events/${id}`)
        .set(own.auth)
        .expect(200);
      expect(read.text).toContain(`"payload":${payload},`);
      const [row] = await svc.dataSource.query(
        'SELECT payload::text AS text FROM events WHERE id = $1',
        [id],
      );
      expect(row.text).toBe(payload);

      const got = await eventually(
        () => receiver.received.find((r) => r.headers['webhook-id'] === id),
        'the webhook',
      );
      expect(got.body).toBe(
        `{"type":"odd.payload","timestamp":${JSON.stringify(created.body.createdAt)},"data":${payload}}`,
      );
      expect(() =>
        new Webhook(endpoint.body.secret).verify(got.body, got.headers as any),
      ).not.toThrow();
    });

    it('should not replay an idempotent request for a payload that differs only beyond float precision', async () => {
      const key = `bodies-${randomUUID()}`;
      const post = (n: string) =>
        request(svc.url)
          .post('/v1/events')
          .set(tenant.auth)
          .set('idempotency-key', key)
          .set('content-type', 'application/json')
          .send(`{"type": "big.number", "payload": {"n": ${n}}}`);
      await post('12345678901234567890').expect(201);
      const res = await post('12345678901234567891');
      expect({ status: res.status, message: messageOf(res) }).toEqual({
        status: 422,
        message: expect.stringMatching(
          /was already used with a different request/,
        ),
      });
    });
  });

  describe('when requests are not authenticated', () => {
    const numbers = `[${Array.from({ length: 50_000 }, (_, i) => i % 10).join(',')}]`;
    const flood = `{"type": "a.b", "payload": {"n": ${numbers}, "m": ${numbers}}}`;

    it('should answer 401 without reading or parsing a byte of the body', async () => {
      expect(flood.length).toBeGreaterThan(190_000);
      const guard = svc.app.get(JsonBodyGuard);
      const before = { ...guard.stats };
      const attempts: [string, Record<string, string>][] = [
        ['/v1/events', {}],
        ['/v1/events', { authorization: 'Bearer whk_not-a-key' }],
        ['/v1/events', { authorization: 'Basic abc' }],
        ['/v1/accounts', { authorization: 'Bearer not-the-admin-token' }],
        ['/v1/accounts', { authorization: `Bearer ${tenant.apiKey}` }],
      ];
      for (const [path, headers] of attempts) {
        const res = await request(svc.url)
          .post(path)
          .set(headers)
          .set('content-type', 'application/json')
          .send(flood);
        expect(res.status).toBe(401);
      }
      const notFound = await request(svc.url)
        .post('/v1/nowhere')
        .set('content-type', 'application/json')
        .send(flood);
      expect(notFound.status).toBe(404);
      expect(guard.stats).toEqual(before);

      await request(svc.url)
        .post('/v1/events')
        .set(tenant.auth)
        .set('content-type', 'application/json')
        .send(flood)
        .expect(201);
      expect(guard.stats).toEqual({
        read: before.read + 1,
        bytes: before.bytes + flood.length,
        parsed: before.parsed + 1,
      });
    });

    it('should refuse two Authorization headers with 400', async () => {
      const before = { ...svc.app.get(JsonBodyGuard).stats };
      const res = await request(svc.url)
        .post('/v1/events')
        .set('authorization', [
          tenant.auth.authorization,
          'Bearer whk_other',
        ] as unknown as string)
        .send({ type: 'a.b', payload: {} });
      expect({ status: res.status, message: messageOf(res) }).toEqual({
        status: 400,
        message: 'Send one Authorization header; this request has 2',
      });
      expect(svc.app.get(JsonBodyGuard).stats).toEqual(before);
    });

    it.each([
      ['Content-Type', ['application/json', 'text/plain']],
      ['Idempotency-Key', ['k-1', 'k-2']],
    ])(
      'should refuse two %s headers with 400 and change nothing',
      async (name, values) => {
        const before = await settledFingerprint();
        const res = await rawPost(
          svc.url,
          '/v1/trips',
          {
            ...tenant.auth,
            'content-type': 'application/json',
            [name]: values,
          },
          JSON.stringify(tripBody()),
        );
        expect({ status: res.status, message: res.body.message }).toEqual({
          status: 400,
          message: `Send one ${name} header; this request has 2`,
        });
        expect(await settledFingerprint()).toEqual(before);
      },
    );
  });
});

describe('when Node refuses a request before the app sees it', () => {
  let svc: E2eApp;

  beforeAll(async () => {
    svc = await startE2eApp({ role: 'api' });
  });

  afterAll(async () => {
    await svc?.close();
  });

  /** Sends raw bytes; resolves with everything the server answered before closing. */
  const raw = (bytes: string) =>
    new Promise<string>((resolve, reject) => {
      const { hostname, port } = new URL(svc.url);
      const socket = connect(Number(port), hostname, () => socket.end(bytes));
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('error', reject);
      socket.on('close', () => resolve(Buffer.concat(chunks).toString()));
    });

  it.each([
    [
      'a 64 KiB header',
      `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`,
      431,
      /Request headers exceed 16 KiB in total/,
    ],
    [
      'a malformed request line',
      'GET /health HTTP/9\r\n\r\n',
      400,
      /Malformed HTTP request/,
    ],
  ])(
    'should answer %s with a JSON error',
    async (_what, bytes, status, message) => {
      const answer = await raw(bytes);
      const [head, body] = answer.split('\r\n\r\n');
      expect(head).toMatch(new RegExp(`^HTTP/1.1 ${status} `));
      expect(head).toMatch(/content-type: application\/json/i);
      expect(JSON.parse(body)).toEqual({
        statusCode: status,
        error: expect.any(String),
        message: expect.stringMatching(message),
      });
    },
  );
});
