/**
 * Red team, round 2: the HTTP surface. Methods other than the routes' own (HEAD, OPTIONS,
 * TRACE, PUT) on every route, unknown routes, Authorization spellings for API keys and the
 * admin token, Idempotency-Key values (length, spaces, non-ASCII bytes), endpoint URLs (ports,
 * IPv4-mapped IPv6, credentials, length after normalisation) and event types.
 */
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import request from 'supertest';
import { Tenant, createTenant } from './support/api';
import { ADMIN_TOKEN, E2eApp, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

jest.setTimeout(120_000);

/** Sends raw bytes and resolves with the status and the body text of the answer. */
function raw(
  baseUrl: string,
  head: Buffer,
  body = Buffer.alloc(0),
): Promise<{ status: number; contentType: string; body: string }> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(Buffer.concat([head, body]));
    });
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const [headers, ...rest] = text.split('\r\n\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(headers)?.[1] ?? 0);
      const contentType =
        /\r\ncontent-type: *([^\r]*)/i.exec(headers)?.[1] ?? '';
      resolve({ status, contentType, body: rest.join('\r\n\r\n') });
    });
  });
}

function head(lines: string[]): Buffer {
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}

describe('redteam2: HTTP surface', () => {
  let svc: E2eApp;
  let tenant: Tenant;
  let receiver: Receiver;
  let endpointId: string;
  let eventId: string;

  beforeAll(async () => {
    svc = await startE2eApp();
    tenant = await createTenant(svc, 'rt2-http');
    receiver = await startReceiver();
    endpointId = (
      await request(svc.url)
        .post('/v1/endpoints')
        .set(tenant.auth)
        .send({ url: receiver.url, eventTypes: ['rt2.http'] })
        .expect(201)
    ).body.id;
    eventId = (
      await request(svc.url)
        .post('/v1/events')
        .set(tenant.auth)
        .send({ type: 'rt2.http', payload: {} })
        .expect(201)
    ).body.id;
  });

  afterAll(async () => {
    await receiver.close();
    await svc.close();
  });

  async function endpointCount(): Promise<number> {
    const [row] = await svc.dataSource.query(
      'SELECT count(*)::int AS n FROM endpoints WHERE account_id = $1',
      [tenant.id],
    );
    return row.n;
  }

  describe('methods a route does not have, and unknown routes', () => {
    const paths = () => [
      '/v1/accounts',
      '/v1/endpoints',
      `/v1/endpoints/${endpointId}`,
      `/v1/endpoints/${endpointId}/secret`,
      `/v1/endpoints/${endpointId}/rotate-secret`,
      `/v1/endpoints/${endpointId}/enable`,
      `/v1/endpoints/${endpointId}/recover`,
      '/v1/trips',
      `/v1/trips/${randomUUID()}/delays`,
      '/v1/events',
      `/v1/events/${eventId}`,
      `/v1/events/${eventId}/deliveries`,
      '/v1/deliveries',
      `/v1/deliveries/${randomUUID()}/retry`,
      '/health',
      '/v1/nope',
      '/v2/endpoints',
      `/v1/endpoints/${endpointId}/nope`,
    ];

    for (const method of ['OPTIONS', 'TRACE', 'PUT'] as const) {
      it(`should answer ${method} on every route with a JSON 4xx, authenticated or not`, async () => {
        const bad: string[] = [];
        for (const path of paths()) {
          for (const auth of [undefined, tenant.auth.authorization]) {
            const res = await raw(
              svc.url,
              head([
                `${method} ${path} HTTP/1.1`,
                'Host: x',
                'Connection: close',
                'Content-Length: 0',
                ...(auth ? [`Authorization: ${auth}`] : []),
              ]),
            );
            const ok =
              res.status >= 400 &&
              res.status < 500 &&
              /application\/json/.test(res.contentType);
            if (!ok)
              bad.push(
                `${method} ${path} ${auth ? 'auth' : 'anon'}: ${res.status} ${res.contentType} ${res.body.slice(0, 60)}`,
              );
          }
        }
        expect(bad).toEqual([]);
      });
    }

    it('should answer HEAD without a body and never with a 2xx to an anonymous caller (but /health)', async () => {
      const bad: string[] = [];
      for (const path of paths()) {
        const res = await raw(
          svc.url,
          head([`HEAD ${path} HTTP/1.1`, 'Host: x', 'Connection: close']),
        );
        if (res.status >= 500) bad.push(`${path}: ${res.status}`);
        if (path !== '/health' && res.status < 300)
          bad.push(`${path}: ${res.status} without auth`);
        if (res.body.length > 0) bad.push(`${path}: a body on HEAD`);
      }
      expect(bad).toEqual([]);
    });
  });

  describe('Authorization spellings', () => {
    it('should accept the scheme in any case and surrounding spaces (RFC 9110)', async () => {
      for (const value of [
        `bearer ${tenant.apiKey}`,
        `BEARER ${tenant.apiKey}`,
        `Bearer   ${tenant.apiKey}`,
      ]) {
        const res = await request(svc.url)
          .get('/v1/endpoints')
          .set('authorization', value);
        expect([value, res.status]).toEqual([value, 200]);
      }
    });

    it('should refuse malformed forms with a JSON 401', async () => {
      const bad: string[] = [];
      for (const value of [
        'Bearer',
        'Bearer ',
        `Bearer${tenant.apiKey}`,
        `Bearer ${tenant.apiKey} extra`,
        `Basic ${Buffer.from(`x:${tenant.apiKey}`).toString('base64')}`,
        `Token ${tenant.apiKey}`,
        `Bearer ${tenant.apiKey.toUpperCase()}`,
        `Bearer ${tenant.apiKey.slice(0, -1)}`,
        `Bearer ${tenant.apiKey}x`,
        `Bearer ${ADMIN_TOKEN}`,
      ]) {
        const res = await request(svc.url)
          .get('/v1/endpoints')
          .set('authorization', value);
        if (res.status !== 401 || !/json/.test(res.headers['content-type']))
          bad.push(`${JSON.stringify(value)}: ${res.status}`);
      }
      expect(bad).toEqual([]);
    });

    it('should refuse non-ASCII and NUL-free control bytes in the header with a JSON 4xx, never a 500', async () => {
      const bad: string[] = [];
      for (const token of ['\xe9\xe9\xe9', `${'\xff'.repeat(40)}`, 'a\x01b']) {
        const res = await raw(
          svc.url,
          head([
            'GET /v1/endpoints HTTP/1.1',
            'Host: x',
            'Connection: close',
            `Authorization: Bearer ${token}`,
          ]),
        );
        if (res.status < 400 || res.status >= 500)
          bad.push(`${JSON.stringify(token)}: ${res.status}`);
      }
      expect(bad).toEqual([]);
    });

    it('should accept the admin token only exactly (case, prefix, suffix, API key)', async () => {
      const bad: string[] = [];
      const variants = [
        ADMIN_TOKEN.toUpperCase(),
        ADMIN_TOKEN.slice(0, -1),
        `${ADMIN_TOKEN}x`,
        `x${ADMIN_TOKEN}`,
        tenant.apiKey,
        '',
      ];
      for (const token of variants) {
        const res = await request(svc.url)
          .post('/v1/accounts')
          .set('authorization', `Bearer ${token}`)
          .send({ name: 'rt2-admin-probe' });
        if (res.status !== 401)
          bad.push(`${JSON.stringify(token)}: ${res.status}`);
      }
      expect(bad).toEqual([]);
      const [row] = await svc.dataSource.query(
        `SELECT count(*)::int AS n FROM accounts WHERE name = 'rt2-admin-probe'`,
      );
      expect(row.n).toBe(0);
    });
  });

  describe('Idempotency-Key values', () => {
    it('should refuse a key of 256 characters, with a space or non-ASCII bytes, creating nothing', async () => {
      const before = await endpointCount();
      const bad: string[] = [];
      for (const key of ['k'.repeat(256), 'a b', '', 'caf\xe9', '\x7f']) {
        const body = Buffer.from(JSON.stringify({ url: receiver.url }));
        const res = await raw(
          svc.url,
          head([
            'POST /v1/endpoints HTTP/1.1',
            'Host: x',
            'Connection: close',
            `Authorization: ${tenant.auth.authorization}`,
            'Content-Type: application/json',
            `Content-Length: ${body.length}`,
            `Idempotency-Key: ${key}`,
          ]),
          body,
        );
        if (
          res.status < 400 ||
          res.status >= 500 ||
          !/json/.test(res.contentType)
        )
          bad.push(`${JSON.stringify(key.slice(0, 10))}: ${res.status}`);
      }
      expect(bad).toEqual([]);
      expect(await endpointCount()).toBe(before);
    });

    it('should take a key of exactly 255 printable characters', async () => {
      const key = `${randomUUID()}${'~'.repeat(255 - 36)}`;
      const first = await request(svc.url)
        .post('/v1/endpoints')
        .set(tenant.auth)
        .set('idempotency-key', key)
        .send({ url: receiver.url })
        .expect(201);
      const again = await request(svc.url)
        .post('/v1/endpoints')
        .set(tenant.auth)
        .set('idempotency-key', key)
        .send({ url: receiver.url })
        .expect(201);
      expect(again.body.id).toBe(first.body.id);
      expect(again.headers['idempotent-replayed']).toBe('true');
    });
  });

  describe('endpoint URLs', () => {
    const port = () => new URL(receiver.url).port;

    it('should refuse port 0 and port 65536 with a JSON 4xx, creating nothing', async () => {
      const before = await endpointCount();
      const results: string[] = [];
      for (const url of [
        'http://127.0.0.1:0/hook',
        'http://127.0.0.1:65536/hook',
      ]) {
        const res = await request(svc.url)
          .post('/v1/endpoints')
          .set(tenant.auth)
          .send({ url });
        results.push(`${url}: ${res.status}`);
      }
      expect(results).toEqual([
        'http://127.0.0.1:0/hook: 422',
        'http://127.0.0.1:65536/hook: 422',
      ]);
      expect(await endpointCount()).toBe(before);
    });

    it('should treat http://[::ffff:127.0.0.1] as 127.0.0.1, or refuse it, never a 500', async () => {
      const res = await request(svc.url)
        .post('/v1/endpoints')
        .set(tenant.auth)
        .send({ url: `http://[::ffff:127.0.0.1]:${port()}/hook` });
      expect([201, 422]).toContain(res.status);
    });

    it('should refuse credentials in a URL without echoing them, on POST and PATCH', async () => {
      for (const url of [
        `http://user:hunter2@127.0.0.1:${port()}/hook`,
        `http://hunter2@127.0.0.1:${port()}/hook`,
        `http://:hunter2@127.0.0.1:${port()}/hook`,
      ]) {
        const post = await request(svc.url)
          .post('/v1/endpoints')
          .set(tenant.auth)
          .send({ url });
        expect([url, post.status]).toEqual([url, 422]);
        expect(post.text).not.toContain('hunter2');
        const patch = await request(svc.url)
          .patch(`/v1/endpoints/${endpointId}`)
          .set(tenant.auth)
          .send({ url });
        expect([url, patch.status]).toEqual([url, 422]);
        expect(patch.text).not.toContain('hunter2');
      }
      const ep = await request(svc.url)
        .get(`/v1/endpoints/${endpointId}`)
        .set(tenant.auth)
        .expect(200);
      expect(ep.body.url).toBe(receiver.url);
    });

    it('should never store a URL longer than the 2048 characters the API accepts', async () => {
      // 2000 characters as sent; WHATWG URL percent-encodes each to 6.
      const url = `http://127.0.0.1:${port()}/${'é'.repeat(2000)}`;
      expect(url.length).toBeLessThanOrEqual(2048);
      const res = await request(svc.url)
        .post('/v1/endpoints')
        .set(tenant.auth)
        .send({ url });
      if (res.status === 201) {
        expect(res.body.url.length).toBeLessThanOrEqual(2048);
      } else {
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
      }
    });

    it('should refuse a URL of 2049 characters with a 400 and a 100 kB one without a 500', async () => {
      const base = `http://127.0.0.1:${port()}/`;
      for (const length of [2049, 100_000]) {
        const res = await request(svc.url)
          .post('/v1/endpoints')
          .set(tenant.auth)
          .send({ url: base + 'a'.repeat(length - base.length) });
        expect([length, res.status]).toEqual([length, 400]);
      }
    });
  });

  describe('event types', () => {
    it('should take a 200-character type, refuse 201 characters, Unicode and empty segments', async () => {
      const ok = await request(svc.url)
        .post('/v1/events')
        .set(tenant.auth)
        .send({ type: `a.${'b'.repeat(198)}`, payload: {} });
      expect(ok.status).toBe(201);
      const bad: string[] = [];
      for (const type of [
        `a.${'b'.repeat(199)}`,
        'trip.délayed',
        'trip..delayed',
        '.trip',
        'trip.',
        '',
        'trip delayed',
        'trip.delayed\n',
      ]) {
        const res = await request(svc.url)
          .post('/v1/events')
          .set(tenant.auth)
          .send({ type, payload: {} });
        if (res.status !== 400)
          bad.push(`${JSON.stringify(type)}: ${res.status}`);
      }
      expect(bad).toEqual([]);
    });

    it('should filter GET /v1/events by a type in any spelling without a 500', async () => {
      for (const type of ['RT2.HTTP', 'x'.repeat(5000), 'rt2.http%00']) {
        const res = await request(svc.url)
          .get('/v1/events')
          .query({ type })
          .set(tenant.auth);
        expect(res.status).toBeLessThan(500);
      }
    });
  });
});
