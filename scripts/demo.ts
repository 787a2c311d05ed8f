import 'reflect-metadata';
import { createServer, IncomingMessage, ServerResponse } from 'http';
import type { AddressInfo } from 'net';
import { Client } from 'pg';
import Redis from 'ioredis';
import { Webhook } from 'standardwebhooks';
import { createApp } from '../src/bootstrap';
import { loadConfig } from '../src/config/app-config';

const DATABASE_URL =
  process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/webhooks';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ADMIN_TOKEN = process.env.ADMIN_TOKEN ?? 'demo-admin-token';
/**
 * The demo's encryption key for signing secrets at rest: fixed so that a second run can open
 * what the first sealed, and public, so for the demo only (set SECRETS_ENCRYPTION_KEYS).
 */
const DEMO_ENCRYPTION_KEYS =
  'demo:ZGVtby1vbmx5LWtleS1wdWJsaWMtbmV2ZXItdXNlLTE=';
const HOW_TO_START = 'Start them with: docker compose up -d postgres redis';

/** Fails with a hint when Postgres or Redis do not answer; creates the database if missing. */
async function checkServices() {
  const target = new URL(DATABASE_URL);
  const server = new URL(DATABASE_URL);
  server.pathname = '/postgres';
  const admin = new Client({
    connectionString: server.toString(),
    connectionTimeoutMillis: 3000,
  });
  try {
    await admin.connect();
  } catch (error) {
    throw new Error(
      `Postgres does not answer at ${server.host} (${String(error)}). ${HOW_TO_START}`,
    );
  }
  const name = decodeURIComponent(target.pathname.slice(1));
  const exists = await admin.query(
    'SELECT 1 FROM pg_database WHERE datname = $1',
    [name],
  );
  if (exists.rowCount === 0)
    await admin.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
  await admin.end();
  const redis = new Redis(REDIS_URL, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    throw new Error(
      `Redis does not answer at ${REDIS_URL} (${String(error)}). ${HOW_TO_START}`,
    );
  } finally {
    redis.disconnect();
  }
}

interface Arrival {
  path: string;
  id: string;
  type: string;
  attempt: number;
  status: number;
  verified: boolean;
  latencyMs: number;
}

/** A receiver that verifies every delivery and fails the first two attempts on /flaky. */
async function startReceiver(
  secrets: Map<string, string>,
  onArrival: (a: Arrival) => void,
) {
  const attempts = new Map<string, number>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      const path = req.url ?? '/';
      const id = String(req.headers['webhook-id']);
      const attempt = (attempts.get(`${path} ${id}`) ?? 0) + 1;
      attempts.set(`${path} ${id}`, attempt);
      let verified = false;
      let type = '?';
      let latencyMs = NaN;
      try {
        const event = new Webhook(secrets.get(path) ?? '').verify(
          body,
          req.headers as any,
        ) as any;
        verified = true;
        type = event.type;
        latencyMs = Date.now() - Date.parse(event.timestamp);
      } catch {
        verified = false;
      }
      const status = !verified
        ? 400
        : path === '/flaky' && attempt <= 2
          ? 503
          : 200;
      res.statusCode = status;
      res.end(status === 200 ? 'thanks' : 'try again later');
      onArrival({ path, id, type, attempt, status, verified, latencyMs });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
  };
}

async function main() {
  await checkServices();
  const config = loadConfig({
    ...process.env,
    DATABASE_URL,
    REDIS_URL,
    ADMIN_TOKEN,
    SECRETS_ENCRYPTION_KEYS:
      process.env.SECRETS_ENCRYPTION_KEYS ?? DEMO_ENCRYPTION_KEYS,
    WEBHOOK_ALLOW_SUBNETS: process.env.WEBHOOK_ALLOW_SUBNETS ?? '127.0.0.0/8',
    WEBHOOK_RETRY_SCHEDULE_MS:
      process.env.WEBHOOK_RETRY_SCHEDULE_MS ?? '0,1000,2000,4000,8000',
    PORT: process.env.PORT ?? '0',
  });
  const app = await createApp(config, false);
  await app.listen(config.port, '127.0.0.1');
  const api = await app.getUrl();
  console.log(`service (API + worker) listening on ${api}`);

  const secrets = new Map<string, string>();
  const arrivals: Arrival[] = [];
  const receiver = await startReceiver(secrets, (a) => {
    arrivals.push(a);
    console.log(
      `  received ${a.path.padEnd(7)} ${a.type.padEnd(13)} webhook-id=${a.id} attempt=${a.attempt} ` +
        `verified=${a.verified ? 'yes' : 'NO'} answered=${a.status} latency=${a.latencyMs} ms`,
    );
  });

  const call = async (
    method: string,
    path: string,
    key: string,
    body?: unknown,
  ) => {
    const res = await fetch(api + path, {
      method,
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${key}`,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json: any = await res.json().catch(() => undefined);
    if (!res.ok)
      throw new Error(
        `${method} ${path} answered ${res.status}: ${JSON.stringify(json)}`,
      );
    return json;
  };

  const account = await call('POST', '/v1/accounts', ADMIN_TOKEN, {
    name: 'Demo Logistics',
  });
  console.log(
    `account ${account.id} created; API key ${account.apiKey.slice(0, 10)}…`,
  );
  const key = account.apiKey;
  for (const path of ['/good', '/flaky']) {
    const endpoint = await call('POST', '/v1/endpoints', key, {
      url: receiver.base + path,
      description:
        path === '/flaky' ? 'fails twice, then succeeds' : 'always answers 200',
    });
    secrets.set(path, endpoint.secret);
    console.log(
      `endpoint ${endpoint.id} -> ${endpoint.url} (${endpoint.description})`,
    );
  }
  const trip = await call('POST', '/v1/trips', key, {
    reference: `DEMO-${Date.now()}`,
    origin: 'Rotterdam',
    destination: 'Milan',
    plannedArrival: new Date(Date.now() + 36 * 3600_000).toISOString(),
  });
  console.log(`trip ${trip.reference} created (trip.created)`);
  const eventIds = [];
  for (const [minutes, reason] of [
    [20, 'congestion at the Gotthard tunnel'],
    [45, 'driver rest period'],
    [15, 'customs check'],
  ] as const) {
    const res = await call('POST', `/v1/trips/${trip.id}/delays`, key, {
      minutes,
      reason,
    });
    eventIds.push(res.event.id);
    console.log(
      `trip delayed by ${minutes} min (${reason}): event ${res.event.id}, ${res.event.deliveries} deliveries`,
    );
  }

  const deadline = Date.now() + 60_000;
  let final: any[] = [];
  while (Date.now() < deadline) {
    final = (
      await Promise.all(
        eventIds.map((id) => call('GET', `/v1/events/${id}/deliveries`, key)),
      )
    ).flatMap((r) => r.data);
    if (final.every((d) => d.status === 'succeeded' || d.status === 'failed'))
      break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  console.log('\ndeliveries of the trip.delayed events, from the attempt log:');
  for (const d of final) {
    const codes = d.attempts
      .map((a: any) => a.statusCode ?? a.errorClass)
      .join(' → ');
    console.log(
      `  ${d.id} ${d.status.padEnd(9)} attempts=${d.attempts.length} (${codes})`,
    );
  }
  const ok =
    final.length === 6 &&
    final.every((d) => d.status === 'succeeded') &&
    arrivals.every((a) => a.verified);
  console.log(
    ok
      ? '\ndemo finished: every delivery verified and succeeded'
      : '\ndemo finished with failures',
  );
  receiver.server.close();
  await app.close();
  process.exit(ok ? 0 : 1);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
