/**
 * Red team: SSRF. The app allows only 127.0.0.2 (a "public" receiver stands there); 127.0.0.1
 * plays the internal service. Every spelling of an internal address must be refused (422,
 * without saying where a host name points), and nothing may ever reach 127.0.0.1, neither
 * directly nor through a redirect.
 */
import type { RequestListener } from 'node:http';
import { createServer, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { Tenant, createTenant, messageOf } from './support/api';
import { E2eApp, eventually, startE2eApp } from './support/harness';

async function listen(
  host: string,
  handler: RequestListener,
): Promise<{ server: Server; port: number; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(`${req.method} ${req.url}`);
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return { server, port: (server.address() as AddressInfo).port, hits };
}

describe('redteam: SSRF with only 127.0.0.2 allowed', () => {
  let svc: E2eApp;
  let t: Tenant;
  let internal: Awaited<ReturnType<typeof listen>>;
  let allowed: Awaited<ReturnType<typeof listen>>;

  beforeAll(async () => {
    svc = await startE2eApp({
      allowSubnets: ['127.0.0.2/32'],
      retryScheduleMs: [0, 100],
    });
    t = await createTenant(svc, 'rt-ssrf');
    internal = await listen('0.0.0.0', (_req, res) => res.end('secret'));
    allowed = await listen('127.0.0.2', (req, res) => {
      const to = new URL(req.url ?? '/', 'http://x').searchParams.get('to');
      res.statusCode = to ? 307 : 200;
      if (to) res.setHeader('location', to);
      res.end();
    });
  });

  afterAll(async () => {
    internal?.server.closeAllConnections();
    allowed?.server.closeAllConnections();
    await new Promise((r) => internal?.server.close(r));
    await new Promise((r) => allowed?.server.close(r));
    await svc?.close();
  });

  const spellings = () => {
    const p = internal.port;
    return [
      `http://127.0.0.1:${p}/`,
      `http://127.1:${p}/`,
      `http://0x7f.1:${p}/`,
      `http://0x7f000001:${p}/`,
      `http://2130706433:${p}/`,
      `http://0177.0.0.1:${p}/`,
      `http://127.0.0.1.:${p}/`,
      `http://①②⑦.0.0.1:${p}/`,
      `http://１２７.０.０.１:${p}/`,
      `http://127%2E0%2E0%2E1:${p}/`,
      `http://[::ffff:127.0.0.1]:${p}/`,
      `http://[::ffff:7f00:1]:${p}/`,
      `http://[0:0:0:0:0:ffff:7f00:1]:${p}/`,
      `http://[::127.0.0.1]:${p}/`,
      `http://[64:ff9b::127.0.0.1]:${p}/`,
      `http://[64:ff9b:1::7f00:1]:${p}/`,
      `http://[2002:7f00:1::]:${p}/`,
      `http://[::1]:${p}/`,
      `http://0:${p}/`,
      `http://0.0.0.0:${p}/`,
      `http://[::]:${p}/`,
      `http://[::ffff:0.0.0.0]:${p}/`,
      `http://localhost:${p}/`,
      `http://LOCALHOST:${p}/`,
      `http://localhost.:${p}/`,
      `http://LocalHost.:${p}/`,
      `http://127.0.0.2@127.0.0.1:${p}/`,
      `http://127.0.0.1:${p}\\@127.0.0.2/`,
      `HTTP://127.0.0.1:${p}/`,
    ];
  };

  it('should refuse every spelling of an internal address with 422, and create nothing', async () => {
    const outcomes: Record<string, string> = {};
    for (const url of spellings()) {
      const res = await request(svc.url)
        .post('/v1/endpoints')
        .set(t.auth)
        .send({ url });
      outcomes[url] = `${res.status}`;
      if (res.status === 422) {
        // Never says what a name resolves to.
        if (/localhost/i.test(url)) {
          expect(messageOf(res)).not.toMatch(/127\.0\.0\.1|::1|loopback/);
        }
      }
    }
    const expected = Object.fromEntries(
      Object.keys(outcomes).map((u) => [
        u,
        expect.stringMatching(/^4(00|22)$/),
      ]),
    );
    expect(outcomes).toEqual(expected);
    const list = await request(svc.url)
      .get('/v1/endpoints')
      .set(t.auth)
      .expect(200);
    expect(list.body.data).toEqual([]);
  });

  it('should refuse the same spellings on PATCH, keeping the old URL', async () => {
    const ep = (
      await request(svc.url)
        .post('/v1/endpoints')
        .set(t.auth)
        .send({ url: `http://127.0.0.2:${allowed.port}/ok` })
        .expect(201)
    ).body;
    for (const url of spellings()) {
      const res = await request(svc.url)
        .patch(`/v1/endpoints/${ep.id}`)
        .set(t.auth)
        .send({ url });
      expect({ url, status: res.status }).toEqual({
        url,
        status: expect.any(Number),
      });
      expect([400, 422]).toContain(res.status);
    }
    const after = await request(svc.url)
      .get(`/v1/endpoints/${ep.id}`)
      .set(t.auth)
      .expect(200);
    expect(after.body.url).toBe(`http://127.0.0.2:${allowed.port}/ok`);
    await request(svc.url)
      .delete(`/v1/endpoints/${ep.id}`)
      .set(t.auth)
      .expect(204);
  });

  it('should not follow a redirect from an allowed receiver to an internal one', async () => {
    const to = encodeURIComponent(`http://127.0.0.1:${internal.port}/meta`);
    const ep = (
      await request(svc.url)
        .post('/v1/endpoints')
        .set(t.auth)
        .send({ url: `http://127.0.0.2:${allowed.port}/r?to=${to}` })
        .expect(201)
    ).body;
    const ev = (
      await request(svc.url)
        .post('/v1/events')
        .set(t.auth)
        .send({ type: 'rt.ssrf', payload: {} })
        .expect(201)
    ).body;
    await eventually(async () => {
      const res = await request(svc.url)
        .get(`/v1/events/${ev.id}/deliveries`)
        .set(t.auth);
      return res.body.data?.[0]?.status === 'failed';
    }, 'the redirected delivery to fail');
    expect(internal.hits).toEqual([]);
    await request(svc.url)
      .delete(`/v1/endpoints/${ep.id}`)
      .set(t.auth)
      .expect(204);
  });

  it('should never have sent a request to the internal address', () => {
    expect(internal.hits).toEqual([]);
  });
});
