import http from 'http';
import request from 'supertest';
import { createTenant, Tenant } from './support/api';
import {
  ADMIN_TOKEN,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import { failOnProcessCrashes } from './support/process-crashes';

/**
 * Adversarial checks of the queue dashboard (Bull Board at /admin/queues): who gets in, what
 * it lets anyone change, what it shows of the tenants' data, and how it answers bad input.
 */

const QUEUE = 'webhook-deliveries';
const BASE = '/admin/queues';
const ADMIN = { authorization: `Bearer ${ADMIN_TOKEN}` };
const basic = (userPass: string) => ({
  authorization: `Basic ${Buffer.from(userPass).toString('base64')}`,
});

interface Raw {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * One request with the path sent byte for byte (supertest and fetch normalise dot segments)
 * and headers given as a raw list (so that one header can be repeated).
 */
function raw(
  base: string,
  method: string,
  path: string,
  headers: [string, string][] = [],
  body?: string,
): Promise<Raw> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const flat: string[] = ['host', url.host, ...headers.flat()];
    if (body !== undefined)
      flat.push(
        'content-type',
        'application/json',
        'content-length',
        String(Buffer.byteLength(body)),
      );
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        headers: flat as unknown as http.OutgoingHttpHeaders,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (text += chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: text,
          }),
        );
      },
    );
    req.setTimeout(10_000, () =>
      req.destroy(new Error(`${method} ${path} timed out`)),
    );
    req.on('error', reject);
    req.end(body);
  });
}

const pairs = (h: Record<string, string>): [string, string][] =>
  Object.entries(h);

describe('when an attacker or a careless operator goes at the queue dashboard', () => {
  failOnProcessCrashes();
  // An API process alone: no worker takes the jobs, they stay in the queue to be looked at.
  let svc: E2eApp;
  let tenants: Tenant[];
  const secrets: string[] = [];
  let jobId: string;

  /** Everything the dashboard could change: counts, pause flag, each job's data and options. */
  async function queueState() {
    const jobs = await svc.queue.getJobs([
      'waiting',
      'delayed',
      'active',
      'paused',
      'failed',
    ]);
    return {
      paused: await svc.queue.isPaused(),
      counts: await svc.queue.getJobCounts(),
      jobs: jobs
        .filter(Boolean)
        .map((job) =>
          JSON.stringify([job.id, job.data, job.opts.delay, job.opts.priority]),
        )
        .sort(),
    };
  }

  beforeAll(async () => {
    svc = await startE2eApp({ role: 'api' });
    await svc.queue.empty();
    tenants = [];
    for (const name of ['dash-a', 'dash-b']) {
      const tenant = await createTenant(svc, name);
      tenants.push(tenant);
      const token = `urltoken-${name}-${process.pid}`;
      const endpoint = await request(svc.url)
        .post('/v1/endpoints')
        .set(tenant.auth)
        .send({ url: `http://127.0.0.1:9/hook/${name}?token=${token}` })
        .expect(201);
      const payloadMarker = `payload-${name}-${process.pid}`;
      await request(svc.url)
        .post('/v1/events')
        .set(tenant.auth)
        .set('x-request-id', `req-${name}`)
        .send({ type: 'parcel.scanned', payload: { note: payloadMarker } })
        .expect(201);
      secrets.push(tenant.apiKey, endpoint.body.secret, token, payloadMarker);
    }
    const jobs = await eventually(async () => {
      const found = await svc.queue.getJobs(['waiting', 'delayed']);
      return found.length >= 2 && found;
    }, 'two delivery jobs in the queue');
    jobId = String(jobs[0].id);
  });

  afterAll(async () => {
    await svc?.queue.empty();
    await svc?.close();
  });

  /** Every Bull Board route that changes a queue or a job, with a body where it takes one. */
  const mutating = (): [string, string, string?][] => [
    ['PUT', `${BASE}/api/queues/pause`],
    ['PUT', `${BASE}/api/queues/resume`],
    [
      'POST',
      `${BASE}/api/queues/${QUEUE}/add`,
      JSON.stringify({ name: 'x', data: { deliveryId: 'forged' } }),
    ],
    ['PUT', `${BASE}/api/queues/${QUEUE}/retry/failed`],
    ['PUT', `${BASE}/api/queues/${QUEUE}/promote`],
    ['PUT', `${BASE}/api/queues/${QUEUE}/clean/waiting`],
    ['PUT', `${BASE}/api/queues/${QUEUE}/clean/delayed`],
    ['PUT', `${BASE}/api/queues/${QUEUE}/pause`],
    ['PUT', `${BASE}/api/queues/${QUEUE}/resume`],
    [
      'PUT',
      `${BASE}/api/queues/${QUEUE}/concurrency`,
      JSON.stringify({ concurrency: 1 }),
    ],
    [
      'PUT',
      `${BASE}/api/queues/${QUEUE}/rate-limit`,
      JSON.stringify({ max: 1, duration: 1000 }),
    ],
    ['PUT', `${BASE}/api/queues/${QUEUE}/rate-limit/release`],
    ['PUT', `${BASE}/api/queues/${QUEUE}/empty`],
    [
      'PUT',
      `${BASE}/api/queues/${QUEUE}/obliterate`,
      JSON.stringify({ force: true }),
    ],
    ['PUT', `${BASE}/api/queues/${QUEUE}/job-schedulers/x/remove`],
    [
      'PATCH',
      `${BASE}/api/queues/${QUEUE}/job-schedulers/x`,
      JSON.stringify({ every: 1000 }),
    ],
    ['PUT', `${BASE}/api/queues/${QUEUE}/job-schedulers/x/run`],
    ['PUT', `${BASE}/api/queues/${QUEUE}/${jobId}/retry`],
    ['PUT', `${BASE}/api/queues/${QUEUE}/${jobId}/clean`],
    ['PUT', `${BASE}/api/queues/${QUEUE}/${jobId}/promote`],
    [
      'PATCH',
      `${BASE}/api/queues/${QUEUE}/${jobId}/update-data`,
      JSON.stringify({ jobData: { deliveryId: 'forged' } }),
    ],
    [
      'PATCH',
      `${BASE}/api/queues/${QUEUE}/${jobId}/delay`,
      JSON.stringify({ runAt: Date.now() + 86_400_000 }),
    ],
    [
      'PATCH',
      `${BASE}/api/queues/${QUEUE}/${jobId}/priority`,
      JSON.stringify({ priority: 5 }),
    ],
    ['PUT', `${BASE}/api/queues/${QUEUE}/${jobId}/remove-unprocessed-children`],
  ];

  it('should refuse every mutating dashboard route 401 to anyone without the admin token, and change nothing', async () => {
    const before = await queueState();
    const intruders: [string, string][][] = [
      [],
      pairs(tenants[0].auth),
      pairs({ authorization: 'Bearer not-the-admin-token' }),
      // The admin token as the user name (no password), and an empty password.
      pairs(basic(ADMIN_TOKEN)),
      pairs(basic(`${ADMIN_TOKEN}:`)),
      pairs(basic('ops:')),
      // A prefix of the token, and the token with a byte more.
      pairs({ authorization: `Bearer ${ADMIN_TOKEN.slice(0, -1)}` }),
      pairs(basic(`ops:${ADMIN_TOKEN}x`)),
    ];
    const seen: string[] = [];
    for (const [method, path, body] of mutating()) {
      for (const headers of intruders) {
        const res = await raw(svc.url, method, path, headers, body);
        if (res.status !== 401)
          seen.push(
            `${method} ${path} ${JSON.stringify(headers)} -> ${res.status}`,
          );
        else expect(JSON.parse(res.body).message).toMatch(/admin token/);
      }
    }
    expect(seen).toEqual([]);
    expect(await queueState()).toEqual(before);
  });

  it('should answer every mutating route as read-only for the admin too, the queue left as it was', async () => {
    const before = await queueState();
    const seen: string[] = [];
    for (const [method, path, body] of mutating()) {
      const res = await raw(svc.url, method, path, pairs(ADMIN), body);
      // The two "all queues" routes skip read-only queues and answer an empty 200.
      const allQueues =
        path.endsWith('/api/queues/pause') ||
        path.endsWith('/api/queues/resume');
      const ok = allQueues ? res.status === 200 : res.status === 405;
      if (!ok)
        seen.push(
          `${method} ${path} -> ${res.status} ${res.body.slice(0, 120)}`,
        );
    }
    expect(seen).toEqual([]);
    expect(await queueState()).toEqual(before);
  });

  it('should let no spelling of the path reach the dashboard without the admin token', async () => {
    const spellings = [
      '/ADMIN/QUEUES/api/queues',
      '/Admin/Queues/',
      '/admin/queues/',
      '/admin/queues//api/queues',
      '/admin/queues/./api/queues',
      '/admin/queues/api/../api/queues',
      '/admin/queues/api/queues/',
      '/admin/queues%2Fapi%2Fqueues',
      '/admin%2Fqueues/api/queues',
      '/admin/queues;x=1/api/queues',
      '/admin/queues/api/queues?activeQueue=webhook-deliveries',
      '/x/../admin/queues/api/queues',
      '/admin/queues/queue/webhook-deliveries',
      '/admin/queues/static/index.html',
    ];
    const seen: string[] = [];
    for (const path of spellings) {
      const res = await raw(svc.url, 'GET', path);
      if (res.status < 400 || /"queues"\s*:/.test(res.body))
        seen.push(`${path} -> ${res.status} ${res.body.slice(0, 80)}`);
    }
    expect(seen).toEqual([]);
  });

  it('should serve no file outside its own assets through its static route', async () => {
    const paths = [
      '/admin/queues/static/../../../../../../etc/passwd',
      '/admin/queues/static/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd',
      '/admin/queues/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
      '/admin/queues/static/..%5c..%5c..%5c..%5cpackage.json',
      '/admin/queues/static/%252e%252e/%252e%252e/package.json',
      '/admin/queues/static/....//....//....//package.json',
      '/admin/queues/static/%00../package.json',
    ];
    for (const path of paths) {
      const res = await raw(svc.url, 'GET', path, pairs(ADMIN));
      expect(res.status).not.toBe(200);
      expect(res.status).toBeLessThan(500);
      expect(res.body).not.toMatch(/root:x:0:0|"devDependencies"/);
    }
  });

  it("should answer a job id that names one of Bull's own Redis keys 404, not 500 with a Redis error", async () => {
    // Bull keeps a job in the hash `<prefix>:<queue>:<id>`, next to its own keys (`id` is a
    // counter, `wait` a list, ...): a job id is looked up with HGETALL on whatever is there.
    const before = await queueState();
    const seen: string[] = [];
    for (const id of [
      'id',
      'wait',
      'active',
      'priority',
      'stalled-check',
      'limiter',
      'paused',
      'completed',
      'failed',
      'repeat',
    ]) {
      const res = await raw(
        svc.url,
        'GET',
        `${BASE}/api/queues/${QUEUE}/${id}`,
        pairs(ADMIN),
      );
      if (res.status >= 500 || /WRONGTYPE|ERR /.test(res.body))
        seen.push(`${id} -> ${res.status} ${res.body.slice(0, 140)}`);
      const logs = await raw(
        svc.url,
        'GET',
        `${BASE}/api/queues/${QUEUE}/${id}/logs`,
        pairs(ADMIN),
      );
      if (logs.status >= 500 || /WRONGTYPE|ERR /.test(logs.body))
        seen.push(`${id}/logs -> ${logs.status} ${logs.body.slice(0, 140)}`);
    }
    expect(seen).toEqual([]);
    expect(await queueState()).toEqual(before);
  });

  it("should show jobs holding ids only: no tenant's API key, signing secret, URL or payload", async () => {
    const texts: string[] = [];
    for (const status of ['waiting', 'delayed', 'latest']) {
      const res = await request(svc.url)
        .get(`${BASE}/api/queues`)
        .query({ activeQueue: QUEUE, status, page: 1 })
        .set(ADMIN)
        .expect(200);
      texts.push(res.text);
      for (const job of res.body.queues.find((q: any) => q.name === QUEUE)
        .jobs) {
        // What a delivery job may carry (src/deliveries/delivery-queue.ts).
        for (const key of Object.keys(job.data))
          expect([
            'deliveryId',
            'endpointId',
            'trigger',
            'onlyIfFailedAt',
            'busySince',
            'parkPlace',
            'context',
          ]).toContain(key);
      }
    }
    const one = await request(svc.url)
      .get(`${BASE}/api/queues/${QUEUE}/${jobId}`)
      .set(ADMIN)
      .expect(200);
    texts.push(one.text);
    texts.push(
      (
        await request(svc.url)
          .get(`${BASE}/api/queues/${QUEUE}/${jobId}/logs`)
          .set(ADMIN)
      ).text,
    );
    const all = texts.join('\n');
    expect(all).toContain(jobId.split(':')[0]);
    for (const secret of secrets) expect(all).not.toContain(secret);
    expect(all).not.toMatch(/whsec_|http:\/\/127\.0\.0\.1:9/);
  });

  it('should refuse a repeated Authorization header with 400, whichever copy holds the admin token', async () => {
    // README (Requests): repeated Authorization headers are a 400; Node keeps the first copy.
    const seen: string[] = [];
    for (const order of [
      [`Bearer ${ADMIN_TOKEN}`, 'Bearer nope'],
      ['Bearer nope', `Bearer ${ADMIN_TOKEN}`],
    ]) {
      const res = await raw(
        svc.url,
        'GET',
        `${BASE}/api/queues`,
        order.map((v) => ['authorization', v] as [string, string]),
      );
      if (res.status !== 400)
        seen.push(`${order.join(' + ')} -> ${res.status}`);
    }
    expect(seen).toEqual([]);
  });

  it('should keep the dashboard shut (403, actionable) on a server without ADMIN_TOKEN, whatever is sent', async () => {
    const open = await startE2eApp({ role: 'api', adminToken: undefined });
    try {
      for (const headers of [
        {},
        ADMIN,
        basic('ops:'),
        basic(':'),
        { authorization: 'Bearer ' },
      ]) {
        const res = await request(open.url)
          .get(`${BASE}/api/queues`)
          .set(headers);
        expect(res.status).toBe(403);
        expect(res.body.message).toMatch(/ADMIN_TOKEN/);
        const put = await raw(
          open.url,
          'PUT',
          `${BASE}/api/queues/${QUEUE}/empty`,
          pairs(headers),
        );
        expect(put.status).toBe(403);
      }
    } finally {
      await open.close();
    }
  });
});
