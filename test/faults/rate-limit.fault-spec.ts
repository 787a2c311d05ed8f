import { FaultEnv } from './support/fault-env';
import { FAULT_ADMIN_TOKEN, ServiceProcess } from './support/service-process';

async function call(
  url: string,
  token: string,
  init: RequestInit = {},
): Promise<Response> {
  const res = await fetch(url, {
    ...init,
    headers: { authorization: `Bearer ${token}`, ...init.headers },
    signal: AbortSignal.timeout(10_000),
  });
  await res.arrayBuffer();
  return res;
}

async function account(base: string, name: string): Promise<string> {
  const res = await fetch(`${base}/v1/accounts`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${FAULT_ADMIN_TOKEN}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({ name }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { apiKey: string }).apiKey;
}

describe('when one account calls two API processes that share a Redis', () => {
  const LIMIT = 6;
  let env: FaultEnv;
  let a: ServiceProcess;
  let b: ServiceProcess;

  beforeAll(async () => {
    env = await FaultEnv.create('ops_ratelimit');
    const limits = {
      PROCESS_ROLE: 'api',
      RATE_LIMIT_MAX: String(LIMIT),
      RATE_LIMIT_WINDOW_MS: '30000',
    };
    a = await env.start('api-a', limits);
    b = await env.start('api-b', limits);
  });

  afterAll(async () => {
    await env?.close();
  });

  it('should count its requests on both against one limit and answer 429 with Retry-After', async () => {
    const key = await account(a.url, 'limited');
    const statuses: number[] = [];
    let refused: Response | undefined;
    for (let i = 0; i < LIMIT + 2; i++) {
      const res = await call(`${[a, b][i % 2].url}/v1/endpoints`, key);
      statuses.push(res.status);
      if (res.status === 429) refused ??= res;
      else expect(res.headers.get('x-ratelimit-limit')).toBe(String(LIMIT));
    }
    expect(statuses).toEqual([...Array<number>(LIMIT).fill(200), 429, 429]);
    const retryAfter = Number(refused!.headers.get('retry-after'));
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(30);
    expect(refused!.headers.get('content-type')).toMatch(/application\/json/);

    // Another account is not affected, on either process.
    const other = await account(b.url, 'other');
    expect((await call(`${a.url}/v1/endpoints`, other)).status).toBe(200);
    expect((await call(`${b.url}/v1/endpoints`, other)).status).toBe(200);
    // A refused request changed nothing: no endpoint was created by the 429'd POST.
    const post = await call(`${b.url}/v1/endpoints`, key, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: 'https://example.com/hook' }),
    });
    expect(post.status).toBe(429);
    const [{ count }] = await env.db.query<{ count: string }>(
      'SELECT count(*) FROM endpoints',
    );
    expect(Number(count)).toBe(0);
  });

  it('should set helmet headers and no X-Powered-By', async () => {
    for (const path of ['/v1/endpoints', '/health/live']) {
      const res = await fetch(`${a.url}${path}`);
      await res.arrayBuffer();
      expect(res.headers.get('x-powered-by')).toBeNull();
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('content-security-policy')).toContain(
        "default-src 'self'",
      );
      expect(res.headers.get('strict-transport-security')).toMatch(/max-age=/);
      expect(res.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    }
  });

  it('should keep answering (unlimited) while Redis is down, and limit again once it is back', async () => {
    const key = await account(a.url, 'outage');
    await env.redis.kill('SIGKILL');
    try {
      for (let i = 0; i < LIMIT + 2; i++) {
        const res = await call(`${a.url}/v1/endpoints`, key);
        expect(res.status).toBe(200);
      }
    } finally {
      await env.redis.restart();
    }
    let status = 0;
    for (let i = 0; i < 100 && status !== 429; i++) {
      status = (await call(`${b.url}/v1/endpoints`, key)).status;
      if (status !== 429) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(429);
  });
});
