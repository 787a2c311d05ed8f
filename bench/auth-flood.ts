/**
 * Does an unauthenticated flood of large JSON bodies slow down authenticated requests?
 *
 * Starts the service (API only) in a child process, then measures the latency of
 * authenticated `GET /v1/endpoints` calls, one at a time, in three phases: quiet, while
 * `BENCH_FLOOD` concurrent clients post 200 KB bodies of 100k small numbers without an API key,
 * and quiet again. The service reads a body only after authentication, so the flood costs it
 * the 401s and the discarded bytes, not JSON work; `GET /health` shows how many bodies were read.
 *
 *   npx ts-node bench/auth-flood.ts
 *   BENCH_PHASE_MS=10000 BENCH_FLOOD=16 npx ts-node bench/auth-flood.ts
 */
import { ChildProcess, spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import { AddressInfo, createServer } from 'node:net';
import { resolve } from 'node:path';
import { Client } from 'pg';
import { databaseUrl, redisUrl } from './request-path/config';

const PHASE_MS = Number(process.env.BENCH_PHASE_MS ?? 5_000);
const FLOOD = Number(process.env.BENCH_FLOOD ?? 8);
const ADMIN_TOKEN = 'bench-admin-token';
const DATABASE = 'webhooks_bench';

interface Reply {
  status: number;
  body: string;
}

function call(
  agent: Agent,
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Reply> {
  return new Promise((done, fail) => {
    const req = request(
      { host: '127.0.0.1', port, method, path, headers, agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          done({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString(),
          }),
        );
      },
    );
    req.on('error', fail);
    req.end(body);
  });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

async function ensureDatabase() {
  const admin = new Client({ connectionString: databaseUrl('postgres') });
  await admin.connect();
  const found = await admin.query(
    'SELECT 1 FROM pg_database WHERE datname = $1',
    [DATABASE],
  );
  if (found.rowCount === 0) await admin.query(`CREATE DATABASE "${DATABASE}"`);
  await admin.end();
}

function startService(port: number): ChildProcess {
  return spawn(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', 'src/main.ts'],
    {
      cwd: resolve(__dirname, '..'),
      env: {
        ...process.env,
        PROCESS_ROLE: 'api',
        PORT: String(port),
        DATABASE_URL: databaseUrl(DATABASE),
        REDIS_URL: redisUrl(),
        BULL_PREFIX: `bench-${process.pid}`,
        ADMIN_TOKEN,
        // NOTE: the bench measures latency under a flood, not the per-account rate limit.
        RATE_LIMIT_MAX: '0',
        SECRETS_ENCRYPTION_KEYS:
          'bench:YmVuY2gtb25seS1rZXktcHVibGljLW5vdC1zZWNyZXQ=',
        NO_COLOR: '1',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

async function phase(
  name: string,
  port: number,
  auth: Record<string, string>,
  flood: boolean,
) {
  const probe = new Agent({ keepAlive: true, maxSockets: 1 });
  const flooder = new Agent({ keepAlive: true, maxSockets: FLOOD });
  const numbers = Array.from({ length: 100_000 }, (_, i) => i % 10).join(',');
  const body = `{"type":"a.b","payload":{"n":[${numbers}]}}`;
  const until = Date.now() + PHASE_MS;
  let floodRequests = 0;
  const floods = flood
    ? Array.from({ length: FLOOD }, async () => {
        while (Date.now() < until) {
          const res = await call(
            flooder,
            port,
            'POST',
            '/v1/events',
            {
              'content-type': 'application/json',
            },
            body,
          );
          if (res.status !== 401) throw new Error(`flood got ${res.status}`);
          floodRequests++;
        }
      })
    : [];
  const latencies: number[] = [];
  while (Date.now() < until) {
    const started = process.hrtime.bigint();
    const res = await call(probe, port, 'GET', '/v1/endpoints', auth);
    if (res.status !== 200) throw new Error(`probe got ${res.status}`);
    latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  await Promise.all(floods);
  probe.destroy();
  flooder.destroy();
  latencies.sort((a, b) => a - b);
  const ms = (v: number) => v.toFixed(1).padStart(7);
  console.log(
    `${name.padEnd(18)} ${String(latencies.length).padStart(6)} ${ms(percentile(latencies, 0.5))}` +
      ` ${ms(percentile(latencies, 0.95))} ${ms(percentile(latencies, 0.99))} ${ms(latencies[latencies.length - 1])}` +
      `   ${flood ? `${((floodRequests * 1000) / PHASE_MS).toFixed(0)} req/s x ${(body.length / 1024).toFixed(0)} KB` : '-'}`,
  );
}

async function main() {
  await ensureDatabase();
  const port = await freePort();
  const service = startService(port);
  const agent = new Agent({ keepAlive: true });
  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const up = await call(agent, port, 'GET', '/health', {}).catch(
        () => null,
      );
      if (up?.status === 200) break;
      if (Date.now() > deadline) throw new Error('the service did not start');
      await new Promise((r) => setTimeout(r, 200));
    }
    const account = await call(
      agent,
      port,
      'POST',
      '/v1/accounts',
      {
        authorization: `Bearer ${ADMIN_TOKEN}`,
        'content-type': 'application/json',
      },
      '{"name":"bench"}',
    );
    const auth = {
      authorization: `Bearer ${JSON.parse(account.body).apiKey as string}`,
    };
    const bodies = async () =>
      JSON.parse(
        (
          await call(agent, port, 'GET', '/health', {
            authorization: `Bearer ${ADMIN_TOKEN}`,
          })
        ).body,
      ).bodies;
    console.log(
      `authenticated GET /v1/endpoints latency (ms), ${PHASE_MS / 1000} s per phase, ${FLOOD} flood clients\n` +
        'phase              count     p50     p95     p99     max   flood (unauthenticated POST /v1/events)',
    );
    const before = await bodies();
    await phase('quiet', port, auth, false);
    await phase('during the flood', port, auth, true);
    await phase('quiet again', port, auth, false);
    const after = await bodies();
    if (before && after) {
      console.log(
        `request bodies read by the service during the run: ${after.read - before.read} ` +
          `(${after.bytes - before.bytes} bytes)`,
      );
    }
  } finally {
    agent.destroy();
    service.kill('SIGTERM');
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
