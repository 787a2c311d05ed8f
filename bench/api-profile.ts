/**
 * `npm run bench:api-profile`: where the API's CPU goes on the delay request
 * (`POST /v1/trips/:id/delays`, `BENCH_API_ENDPOINTS` (1) endpoints, 32 requests in flight). Runs the compiled service
 * (`PROCESS_ROLE=api`, `--cpu-prof`) on a fresh database and redis-server, sends
 * `BENCH_API_REQUESTS` (3000) delays, and prints requests/s, CPU per request (service, Postgres,
 * Redis, and this process as the load generator), the machine's idle share, and the profile's
 * self time grouped by package (node_modules) or source file, then the top functions.
 * `BENCH_API_PROFILE_DIR=<dir>` keeps the profile (open it in Chrome DevTools).
 */
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { buildCurrent, buildRef } from './e2e/builds';
import { drive } from './e2e/client';
import { selfByPackage, topSelf } from './e2e/profile';
import { VerifyingReceiver } from './e2e/receiver';
import { Scenario } from './e2e/scenario';

const REQUESTS = Number(process.env.BENCH_API_REQUESTS ?? 3000);
/**
 * `BENCH_API_PG_SOCKET=<dir>` (e.g. /var/run/postgresql): the service reaches Postgres over its
 * Unix socket instead of loopback TCP.
 */
const PG_SOCKET = process.env.BENCH_API_PG_SOCKET;
/** Requests in flight (`BENCH_API_CONCURRENCY`, 32). */
const CONCURRENCY = Number(process.env.BENCH_API_CONCURRENCY ?? 32);
/**
 * API processes (`BENCH_API_PROCESSES`, 1), requests taking turns between them; only the first
 * is profiled.
 */
const PROCESSES = Number(process.env.BENCH_API_PROCESSES ?? 1);
/** Endpoints subscribed to the delays (`BENCH_API_ENDPOINTS`): deliveries per request. */
const ENDPOINTS = Number(process.env.BENCH_API_ENDPOINTS ?? 1);
/**
 * Extra service environment, as JSON (`BENCH_API_ENV='{"LOG_LEVEL":"warn"}'`): to measure what
 * one part of the request costs by turning it off.
 */
const EXTRA_ENV: Record<string, string> = JSON.parse(
  process.env.BENCH_API_ENV ?? '{}',
);
/**
 * A git ref to measure instead of the working tree (`BENCH_API_BUILD=HEAD~1`): alternate runs
 * of two builds to compare them on the same machine state.
 */
const BUILD_REF = process.env.BENCH_API_BUILD;
/** Where the `.cpuprofile` is kept (`BENCH_API_PROFILE_DIR`); a temporary folder otherwise. */
const KEEP_DIR = process.env.BENCH_API_PROFILE_DIR;

async function main() {
  const build = BUILD_REF ? buildRef('ref', BUILD_REF) : buildCurrent();
  const receiver = await VerifyingReceiver.start();
  const dir = KEEP_DIR ?? mkdtempSync(join(tmpdir(), 'bench-api-prof-'));
  const s = await Scenario.create(receiver, build.dir);
  try {
    const socketUrl = new URL(s.db.url);
    socketUrl.hostname = 'localhost';
    socketUrl.searchParams.set('host', PG_SOCKET ?? '');
    const api = await s.start('api', {
      PROCESS_ROLE: 'api',
      ...(PG_SOCKET ? { DATABASE_URL: socketUrl.toString() } : {}),
      SERVICE_NODE_FLAGS: `--cpu-prof --cpu-prof-dir=${dir}`,
      ...EXTRA_ENV,
    });
    await s.tenant(api.url, ENDPOINTS);
    const others = [];
    for (let k = 1; k < PROCESSES; k++)
      others.push(
        await s.start(`api${k}`, {
          PROCESS_ROLE: 'api',
          ...(PG_SOCKET ? { DATABASE_URL: socketUrl.toString() } : {}),
          ...EXTRA_ENV,
        }),
      );
    if (others.length > 0) s.useApis([api, ...others].map((x) => x.url));
    // Warm-up, then the measured run.
    await drive({
      send: (i) => s.delay(i),
      total: 300,
      concurrency: CONCURRENCY,
    });
    await s.cpu.begin();
    const genBefore = process.cpuUsage();
    const machineBefore = machineTicks();
    const run = await drive({
      send: (i) => s.delay(i),
      total: REQUESTS,
      concurrency: CONCURRENCY,
    });
    const cpu = await s.cpu.end();
    const gen = process.cpuUsage(genBefore);
    const machine = machineTicks(machineBefore);
    const n = Math.max(1, run.sent.length);
    console.log(
      JSON.stringify({
        build: build.commit,
        endpoints: ENDPOINTS,
        concurrency: CONCURRENCY,
        processes: PROCESSES,
        postgres: PG_SOCKET ? `socket ${PG_SOCKET}` : 'tcp',
        env: EXTRA_ENV,
        requests: run.sent.length,
        errors: run.errors,
        perSec: +((1000 * run.sent.length) / run.elapsedMs).toFixed(1),
        cpuMsPerRequest: {
          service: +(cpu.service / n).toFixed(3),
          postgres: +(cpu.postgres / n).toFixed(3),
          redis: +(cpu.redis / n).toFixed(3),
          loadGenerator: +((gen.user + gen.system) / 1000 / n).toFixed(3),
        },
        machineIdlePct: +((100 * machine.idle) / machine.total).toFixed(1),
      }),
    );
    await api.kill('SIGTERM', 20_000);
    console.table(selfByPackage(dir));
    console.table(topSelf(dir, 25));
  } finally {
    await s.close();
    await receiver.close();
    if (!KEEP_DIR) rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The machine's CPU ticks from /proc/stat (all cores), idle and total, since `since` when given:
 * how much of the cores the run left unused.
 */
function machineTicks(since?: { idle: number; total: number }) {
  const fields = readFileSync('/proc/stat', 'utf8')
    .split('\n')[0]
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const idle = fields[3] + fields[4];
  const total = fields.reduce((a, b) => a + b, 0);
  return {
    idle: idle - (since?.idle ?? 0),
    total: total - (since?.total ?? 0),
  };
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
