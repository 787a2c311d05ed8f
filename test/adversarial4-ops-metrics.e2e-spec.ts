import { randomBytes, randomUUID } from 'crypto';
import http from 'http';
import { Writable } from 'stream';
import request from 'supertest';
import { ObservabilityConfig } from '../src/observability/observability-config';
import { createTenant, Tenant, tripBody } from './support/api';
import {
  ADMIN_TOKEN,
  E2E_ENCRYPTION_KEYS,
  E2eApp,
  SILENT,
  eventually,
  startE2eApp,
} from './support/harness';
import { failOnProcessCrashes } from './support/process-crashes';
import { Receiver, startReceiver } from './support/receiver';

/**
 * Adversarial checks of `GET /metrics` and the health routes: label cardinality under
 * attacker-chosen input, tenant data in metrics and logs, and what non-admin credentials see.
 */

const ADMIN = { authorization: `Bearer ${ADMIN_TOKEN}` };
const basic = (userPass: string) => ({
  authorization: `Basic ${Buffer.from(userPass).toString('base64')}`,
});

/** The label sets of one metric's samples (`{...}` strings). */
function seriesOf(text: string, name: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`))
      out.add(line.slice(name.length, line.lastIndexOf('}') + 1));
  }
  return out;
}

/** One request sent as is (path byte for byte, raw header list). */
function raw(
  base: string,
  method: string,
  path: string,
  headers: [string, string][] = [],
): Promise<{ status: number; body: string }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        headers: [
          'host',
          url.host,
          ...headers.flat(),
        ] as unknown as http.OutgoingHttpHeaders,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.setTimeout(10_000, () =>
      req.destroy(new Error(`${method} ${path} timed out`)),
    );
    req.on('error', reject);
    req.end();
  });
}

describe('when attackers feed the metrics and probe the health checks', () => {
  failOnProcessCrashes();
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const observability: ObservabilityConfig = {
    ...SILENT,
    logLevel: 'debug',
    logDestination: destination,
  };
  let svc: E2eApp;
  let receiver: Receiver;
  const tenants: Tenant[] = [];
  /** What must never show in metrics or logs. */
  const secrets: Record<string, string> = {};
  const scrape = async () =>
    (await request(svc.url).get('/metrics').set(ADMIN).expect(200)).text;

  beforeAll(async () => {
    svc = await startE2eApp({}, observability);
    // First attempt of each delivery fails (a retry is scheduled and logged), then 200.
    const seen = new Map<string, number>();
    receiver = await startReceiver((_n, received, res) => {
      const id = String(received.headers['webhook-id']);
      const count = seen.get(id) ?? 0;
      seen.set(id, count + 1);
      res.statusCode = count === 0 ? 503 : 200;
      res.end(count === 0 ? 'later' : 'ok');
    });
    for (const name of ['metrics-a', 'metrics-b']) {
      const tenant = await createTenant(svc, `acct-${name}-${process.pid}`);
      tenants.push(tenant);
      const pathToken = `pathtok${randomBytes(6).toString('hex')}`;
      const queryToken = `qtok${randomBytes(6).toString('hex')}`;
      const endpoint = await request(svc.url)
        .post('/v1/endpoints')
        .set(tenant.auth)
        .send({
          url: `${receiver.url.replace('/hook', '')}/hook?${pathToken}=1&token=${queryToken}`,
        })
        .expect(201);
      const reference = `REF-${randomBytes(5).toString('hex')}`;
      const trip = await request(svc.url)
        .post('/v1/trips')
        .set(tenant.auth)
        .send(tripBody({ reference }))
        .expect(201);
      const requestId = `rid-${randomBytes(6).toString('hex')}`;
      const reason = `reason-${randomBytes(6).toString('hex')}`;
      await request(svc.url)
        .post(`/v1/trips/${trip.body.id}/delays`)
        .set(tenant.auth)
        .set('x-request-id', requestId)
        .send({ minutes: 12, reason })
        .expect(201);
      Object.assign(secrets, {
        [`${name}.apiKey`]: tenant.apiKey,
        [`${name}.secret`]: endpoint.body.secret,
        [`${name}.pathToken`]: pathToken,
        [`${name}.queryToken`]: queryToken,
        [`${name}.reference`]: reference,
        [`${name}.reason`]: reason,
        [`${name}.accountId`]: tenant.id,
        [`${name}.endpointId`]: endpoint.body.id,
        [`${name}.tripId`]: trip.body.id,
      });
    }
    // Every delivery of both tenants succeeded on its second attempt.
    await eventually(
      () =>
        receiver.received.filter((r) => r.body.includes('trip.delayed'))
          .length >= 4,
      'two attempts per tenant',
      20_000,
    );
  });

  afterAll(async () => {
    await svc?.close();
    await receiver?.close();
  });

  it('should keep the number of request series bounded whatever paths, methods and headers anonymous callers send', async () => {
    const before = seriesOf(
      await scrape(),
      'http_request_duration_seconds_count',
    );
    const markers: string[] = [];
    const methods = [
      'GET',
      'POST',
      'PUT',
      'PATCH',
      'DELETE',
      'OPTIONS',
      'HEAD',
      'PROPFIND',
      'MKCOL',
      'PURGE',
      'SEARCH',
      'REPORT',
      'LOCK',
      'UNLOCK',
      'QUERY',
    ];
    const paths = (m: string) => [
      `/${m}`,
      `/v1/${m}/${randomUUID()}`,
      `/V1/TRIPS/${randomUUID()}/DELAYS?${m}=1`,
      `/v1/trips/${m}/delays`,
      `/v1/deliveries/${randomUUID()}/attempts?cursor=${m}`,
      `/admin/queues/${m}`,
      `/ADMIN/queues/api/queues/${m}/x`,
      `/health/${m}`,
      `/metrics/${m}`,
      `/docs/${m}`,
      `/%2e%2e/${m}`,
    ];
    for (let i = 0; i < 8; i++) {
      for (const method of methods) {
        const marker = `mk${randomBytes(4).toString('hex')}`;
        markers.push(marker);
        for (const path of paths(marker)) {
          await raw(svc.url, method, path, [
            ['x-request-id', marker],
            ['user-agent', marker],
            ['authorization', `Bearer ${marker}`],
          ]).catch(() => undefined);
        }
      }
    }
    const after = seriesOf(
      await scrape(),
      'http_request_duration_seconds_count',
    );
    const added = [...after].filter((s) => !before.has(s));
    const joined = added.join('\n');
    for (const marker of markers) expect(joined).not.toContain(marker);
    expect(joined).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-/i);
    // 15 methods x a few (route, status) pairs: far fewer than the 1,320 requests sent.
    expect(added.length).toBeLessThanOrEqual(15 * 8);
  });

  it("should label the dashboard's routes with their template whatever the case of the path the admin typed", async () => {
    for (const prefix of [
      '/admin/queues',
      '/ADMIN/QUEUES',
      '/Admin/Queues',
      '/aDmIn/qUeUeS',
    ]) {
      await request(svc.url).get(`${prefix}/api/queues`).set(ADMIN).expect(200);
    }
    const routes = [
      ...seriesOf(await scrape(), 'http_request_duration_seconds_count'),
    ]
      .map((s) => /route="([^"]*)"/.exec(s)?.[1] ?? '')
      .filter((route) => /queues/i.test(route));
    // README: `route` is the template; no label holds anything a caller chose.
    expect(routes).toContain('/admin/queues/api/queues');
    expect(routes.filter((r) => !r.startsWith('/admin/queues/'))).toEqual([]);
  });

  it("should put no tenant's key, secret, URL, ids or data anywhere in the metrics text", async () => {
    const text = await scrape();
    for (const [what, value] of Object.entries(secrets)) {
      expect({ what, found: text.includes(value) }).toEqual({
        what,
        found: false,
      });
    }
    expect(text).not.toContain(ADMIN_TOKEN);
    expect(text).not.toMatch(/whsec_|127\.0\.0\.1|token=/);
  });

  it("should log no tenant's URL, key or secret (the worker logs attempts without their URL)", async () => {
    expect(lines.some((l) => l.includes('webhook attempt sent'))).toBe(true);
    const all = lines.join('\n');
    for (const [what, value] of Object.entries(secrets)) {
      if (/Id$/.test(what) || /reference|reason/.test(what)) continue; // ids are meant to be logged
      expect({ what, found: all.includes(value) }).toEqual({
        what,
        found: false,
      });
    }
    for (const value of [ADMIN_TOKEN, E2E_ENCRYPTION_KEYS.split(':')[1]])
      expect(all).not.toContain(value);
  });

  it('should show a non-admin caller only up/down on every health route, whatever credentials it sends', async () => {
    const callers: Record<string, string>[] = [
      tenants[0].auth,
      basic(`ops:${ADMIN_TOKEN}`),
      { authorization: `Bearer ${ADMIN_TOKEN}x` },
      { authorization: `Token ${ADMIN_TOKEN}` },
      { authorization: `Bearer ${ADMIN_TOKEN} extra` },
    ];
    for (const headers of callers) {
      const summary = await request(svc.url)
        .get('/health')
        .set(headers)
        .expect(200);
      expect(summary.body).toEqual({
        status: 'ok',
        database: 'up',
        redis: 'up',
      });
      const ready = await request(svc.url)
        .get('/health/ready')
        .set(headers)
        .expect(200);
      for (const part of ['info', 'details'])
        for (const value of Object.values(ready.body[part]))
          expect(value).toEqual({ status: 'up' });
      const live = await request(svc.url)
        .get('/health/live')
        .set(headers)
        .expect(200);
      expect(JSON.stringify(live.body)).not.toMatch(/pending|committed|count/);
    }
  });

  it('should refuse a repeated Authorization header with 400 on the metrics and health routes', async () => {
    // README (Requests): repeated Authorization headers are a 400 (Node keeps the first).
    const seen: string[] = [];
    for (const path of ['/metrics', '/health', '/health/ready']) {
      const res = await raw(svc.url, 'GET', path, [
        ['authorization', `Bearer ${ADMIN_TOKEN}`],
        ['authorization', 'Bearer someone-else'],
      ]);
      if (res.status !== 400)
        seen.push(`${path} -> ${res.status} ${res.body.slice(0, 90)}`);
    }
    expect(seen).toEqual([]);
  });

  it('should tell a scraper sending the admin token the wrong way what to send (the admin token, not an API key)', async () => {
    // The dashboard takes the admin token as a Basic password; /metrics takes only Bearer.
    const res = await request(svc.url)
      .get('/metrics')
      .set(basic(`prometheus:${ADMIN_TOKEN}`))
      .expect(401);
    expect(res.body.message).toMatch(/admin token|ADMIN_TOKEN/i);
    expect(res.body.message).not.toMatch(/api key/i);
  });

  it('should serve concurrent scrapes, each one complete', async () => {
    const texts = await Promise.all(
      Array.from({ length: 12 }, () =>
        request(svc.url).get('/metrics').set(ADMIN).timeout(10_000),
      ),
    );
    for (const res of texts) expect(res.status).toBe(200);
    const polls = texts
      .map(
        (r) =>
          /^transactional_outbox_relay_polls_total (\d+)/m.exec(r.text)?.[1],
      )
      .map(Number);
    expect(polls.every((n) => Number.isFinite(n))).toBe(true);
  });
});
