/**
 * Red team: a hostile tenant reusing another tenant's idempotency keys and ids on every route
 * and filter, and a search for signing secrets and API keys wherever they must not be: API
 * answers (lists, logs, health), Redis keys and values, Postgres rows, and the process log.
 */
import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import request from 'supertest';
import { Tenant, createTenant, tripBody } from './support/api';
import { DataSource } from 'typeorm';
import { createApp } from '../src/bootstrap';
import {
  ADMIN_TOKEN,
  E2E_BULL_PREFIX,
  e2eConfig,
  e2eRedisUrl,
  eventually,
} from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

describe('redteam: tenancy, idempotency and secrets', () => {
  let svc: { url: string; dataSource: DataSource; close(): Promise<void> };
  let receiver: Receiver;
  let a: Tenant;
  let b: Tenant;
  const logged: string[] = [];
  const writes = {
    out: process.stdout.write.bind(process.stdout),
    err: process.stderr.write.bind(process.stderr),
  };
  const secrets: string[] = [];
  let endpointA: { id: string; secret: string };
  let eventA: string;
  let tripA: string;
  let deliveryA: string;
  const key = `rt-shared-${randomUUID()}`;

  beforeAll(async () => {
    // The process log: everything Nest or the service writes while the spec runs.
    process.stdout.write = ((chunk: any, ...rest: any[]) => {
      logged.push(String(chunk));
      return writes.out(chunk, ...rest);
    }) as typeof process.stdout.write;
    process.stderr.write = ((chunk: any, ...rest: any[]) => {
      logged.push(String(chunk));
      return writes.err(chunk, ...rest);
    }) as typeof process.stderr.write;
    // Unlike startE2eApp, with Nest's logger on: the log is part of what is searched.
    const app = await createApp(e2eConfig(), undefined);
    await app.listen(0, '127.0.0.1');
    svc = {
      url: await app.getUrl(),
      dataSource: app.get(DataSource),
      close: () => app.close(),
    };
    // The receiver answers with everything it got, headers included.
    receiver = await startReceiver((_n, r, res) =>
      res.end(JSON.stringify({ headers: r.headers, body: r.body })),
    );
    [a, b] = await Promise.all([
      createTenant(svc, 'rt-tenancy-a'),
      createTenant(svc, 'rt-tenancy-b'),
    ]);
    endpointA = (
      await request(svc.url)
        .post('/v1/endpoints')
        .set(a.auth)
        .set('idempotency-key', key)
        .send({ url: receiver.url, description: 'a' })
        .expect(201)
    ).body;
    secrets.push(endpointA.secret);
    tripA = (
      await request(svc.url)
        .post('/v1/trips')
        .set(a.auth)
        .send(tripBody())
        .expect(201)
    ).body.id;
    eventA = (
      await request(svc.url)
        .post('/v1/events')
        .set(a.auth)
        .send({ type: 'rt.tenancy', payload: { x: 1 } })
        .expect(201)
    ).body.id;
    const log = await eventually(async () => {
      const res = await request(svc.url)
        .get(`/v1/events/${eventA}/deliveries`)
        .set(a.auth);
      return res.body.data?.[0]?.status === 'succeeded' && res.body.data;
    }, 'the delivery of A');
    deliveryA = log[0].id;
  });

  afterAll(async () => {
    process.stdout.write = writes.out;
    process.stderr.write = writes.err;
    await receiver?.close();
    await svc?.close();
  });

  describe('idempotency keys across tenants and routes', () => {
    it('should give B its own endpoint and secret for A’s key and body, never A’s answer', async () => {
      const res = await request(svc.url)
        .post('/v1/endpoints')
        .set(b.auth)
        .set('idempotency-key', key)
        .send({ url: receiver.url, description: 'a' })
        .expect(201);
      expect(res.headers['idempotent-replayed']).toBeUndefined();
      expect(res.body.id).not.toBe(endpointA.id);
      expect(res.body.secret).not.toBe(endpointA.secret);
      secrets.push(res.body.secret);
    });

    it('should answer 422 when A reuses its key on another route, and create nothing', async () => {
      const before = (await request(svc.url).get('/v1/events').set(a.auth)).body
        .data.length;
      const res = await request(svc.url)
        .post('/v1/events')
        .set(a.auth)
        .set('idempotency-key', key)
        .send({ url: receiver.url, description: 'a' });
      expect(res.status).toBe(422);
      const res2 = await request(svc.url)
        .post(`/v1/endpoints/${endpointA.id}/rotate-secret`)
        .set(a.auth)
        .set('idempotency-key', key);
      expect(res2.status).toBe(422);
      const after = (await request(svc.url).get('/v1/events').set(a.auth)).body
        .data.length;
      expect(after).toBe(before);
      const secret = await request(svc.url)
        .get(`/v1/endpoints/${endpointA.id}/secret`)
        .set(a.auth)
        .expect(200);
      expect(secret.body.secret).toBe(endpointA.secret);
    });

    it('should replay A’s own answer (secret included) to A only', async () => {
      const res = await request(svc.url)
        .post('/v1/endpoints')
        .set(a.auth)
        .set('idempotency-key', key)
        .send({ url: receiver.url, description: 'a' })
        .expect(201);
      expect(res.headers['idempotent-replayed']).toBe('true');
      expect(res.body.secret).toBe(endpointA.secret);
    });

    it('should rotate with a key and keep the new secret out of other tenants’ reach', async () => {
      const res = await request(svc.url)
        .post(`/v1/endpoints/${endpointA.id}/rotate-secret`)
        .set(a.auth)
        .set('idempotency-key', `${key}-rotate`)
        .expect(201);
      secrets.push(res.body.secret);
      const stolen = await request(svc.url)
        .post(`/v1/endpoints/${endpointA.id}/rotate-secret`)
        .set(b.auth)
        .set('idempotency-key', `${key}-rotate`);
      expect(stolen.status).toBe(404);
      expect(stolen.text).not.toContain(res.body.secret);
    });
  });

  describe('another tenant’s ids in every route and filter', () => {
    it.each([
      ['GET', '/v1/endpoints/:endpoint', 404],
      ['GET', '/v1/endpoints/:endpoint/secret', 404],
      ['PATCH', '/v1/endpoints/:endpoint', 404],
      ['POST', '/v1/endpoints/:endpoint/enable', 404],
      ['POST', '/v1/endpoints/:endpoint/recover', 404],
      ['DELETE', '/v1/endpoints/:endpoint', 404],
      ['GET', '/v1/events/:event', 404],
      ['GET', '/v1/events/:event/deliveries', 404],
      ['GET', '/v1/deliveries/:delivery', 404],
      ['GET', '/v1/deliveries/:delivery/attempts', 404],
      ['POST', '/v1/deliveries/:delivery/retry', 404],
      ['GET', '/v1/trips/:trip', 404],
      ['POST', '/v1/trips/:trip/delays', 404],
      ['POST', '/v1/trips/:trip/arrival', 404],
    ])('should answer %s %s with %i to B', async (method, path, status) => {
      const url = path
        .replace(':endpoint', endpointA.id)
        .replace(':event', eventA)
        .replace(':delivery', deliveryA)
        .replace(':trip', tripA);
      const body: Record<string, unknown> = path.endsWith('recover')
        ? { since: new Date(Date.now() - 60_000).toISOString() }
        : path.endsWith('delays')
          ? { minutes: 5, reason: 'x' }
          : method === 'PATCH'
            ? { description: 'hijacked' }
            : {};
      const req = request(svc.url)
        [method.toLowerCase() as 'get' | 'post' | 'patch' | 'delete'](url)
        .set(b.auth);
      const res =
        method === 'GET' || method === 'DELETE'
          ? await req
          : await req.send(body);
      expect(res.status).toBe(status);
    });

    it.each([
      '/v1/deliveries?endpointId=:endpoint',
      '/v1/deliveries?eventId=:event',
      '/v1/deliveries?status=succeeded&endpointId=:endpoint',
      '/v1/events?tripId=:trip',
      '/v1/events?type=rt.tenancy',
    ])('should list nothing of A’s to B on %s', async (path) => {
      const res = await request(svc.url)
        .get(
          path
            .replace(':endpoint', endpointA.id)
            .replace(':event', eventA)
            .replace(':trip', tripA),
        )
        .set(b.auth)
        .expect(200);
      const text = JSON.stringify(res.body);
      for (const id of [endpointA.id, eventA, deliveryA, tripA]) {
        expect(text).not.toContain(id);
      }
    });

    it('should have left A’s endpoint as it was', async () => {
      const res = await request(svc.url)
        .get(`/v1/endpoints/${endpointA.id}`)
        .set(a.auth)
        .expect(200);
      expect(res.body.description).toBe('a');
    });
  });

  describe('secrets where they must not be', () => {
    const needles = () => [
      ...secrets,
      ...secrets.map((s) => s.replace(/^whsec_/, '')),
      a.apiKey,
      b.apiKey,
    ];

    it('should not appear in any read answer', async () => {
      const paths = [
        '/v1/endpoints',
        `/v1/endpoints/${endpointA.id}`,
        '/v1/events',
        `/v1/events/${eventA}`,
        `/v1/events/${eventA}/deliveries`,
        '/v1/deliveries',
        `/v1/deliveries/${deliveryA}`,
        `/v1/deliveries/${deliveryA}/attempts`,
        `/v1/trips/${tripA}`,
      ];
      for (const t of [a, b]) {
        for (const path of paths) {
          const res = await request(svc.url).get(path).set(t.auth);
          expect(res.status).not.toBe(500);
          for (const needle of needles())
            expect(res.text).not.toContain(needle);
        }
      }
      const health = await request(svc.url)
        .get('/health')
        .set('authorization', `Bearer ${ADMIN_TOKEN}`)
        .expect(200);
      for (const needle of needles()) expect(health.text).not.toContain(needle);
    });

    it('should not appear in Redis keys or values', async () => {
      const redis = new Redis(e2eRedisUrl());
      try {
        const dump: string[] = [];
        let cursor = '0';
        do {
          const [next, keys] = await redis.scan(cursor, 'COUNT', 1000);
          cursor = next;
          for (const k of keys) {
            dump.push(k);
            const type = await redis.type(k);
            if (type === 'string') dump.push(String(await redis.get(k)));
            else if (type === 'hash')
              dump.push(JSON.stringify(await redis.hgetall(k)));
            else if (type === 'list')
              dump.push(JSON.stringify(await redis.lrange(k, 0, -1)));
            else if (type === 'set')
              dump.push(JSON.stringify(await redis.smembers(k)));
            else if (type === 'zset')
              dump.push(JSON.stringify(await redis.zrange(k, 0, -1)));
          }
        } while (cursor !== '0');
        expect(dump.some((d) => d.startsWith(E2E_BULL_PREFIX))).toBe(true);
        const text = dump.join('\n');
        for (const needle of needles()) expect(text).not.toContain(needle);
      } finally {
        redis.disconnect();
      }
    });

    it('should not appear in clear in any Postgres row', async () => {
      const tables: { table_name: string }[] = await svc.dataSource.query(
        `SELECT table_name FROM information_schema.tables
          WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`,
      );
      for (const { table_name } of tables) {
        const hits: unknown[] = await svc.dataSource.query(
          `SELECT 1 FROM "${table_name}" t WHERE ${needles()
            .map((_n, i) => `strpos(t::text, $${i + 1}) > 0`)
            .join(' OR ')} LIMIT 1`,
          needles(),
        );
        expect({ table_name, hits: hits.length }).toEqual({
          table_name,
          hits: 0,
        });
      }
    });

    it('should not appear in the process log', () => {
      const text = logged.join('');
      expect(text).toMatch(/Nest|LOG|WARN/);
      for (const needle of needles()) expect(text).not.toContain(needle);
    });
  });
});
