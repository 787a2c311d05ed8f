/**
 * Overhead of nestjs-transactional-jobs against hand-written code, measured in one run.
 * See bench/README.md. Run with `npm run bench`.
 */
import { ChildProcess, fork } from 'child_process';
import { mkdirSync, writeFileSync } from 'fs';
import http from 'http';
import os from 'os';
import path from 'path';
import { Client } from 'pg';
import { createTableSql } from './support/bench-row.entity';
import {
  OrchestratorMessage,
  ServerMessage,
  ServerMode,
  databaseUrl,
  queueName,
} from './support/config';
import { SegmentResult, median, percentile, runSegment } from './support/load';

interface Variant {
  key: string;
  server: ServerMode;
  path: '/a' | '/b' | '/c' | '/e';
  label: string;
  /** Diagnostic variants run only when named in BENCH_VARIANTS. */
  diagnostic?: boolean;
}

const VARIANTS: Variant[] = [
  {
    key: 'A',
    server: 'plain',
    path: '/a',
    label:
      'hand-written: dataSource.transaction(save), then queue.add({id}) (app without the library)',
  },
  {
    key: 'B',
    server: 'lib',
    path: '/b',
    label:
      'library: @Transactional + TransactionHost.getRepository().save + TransactionAwareQueue.add',
  },
  {
    key: 'C',
    server: 'plain',
    path: '/c',
    label:
      'floor: dataSource.transaction(save), no job (app without the library)',
  },
  {
    key: "A'",
    server: 'lib',
    path: '/a',
    label:
      'A served by the app that has TransactionalModule (same process as B)',
  },
  {
    key: 'D',
    server: 'lib-cls',
    path: '/b',
    label: 'B with ClsModule.forRoot({ middleware: { mount: true } })',
  },
  {
    key: 'A+als',
    server: 'plain-als',
    path: '/a',
    label:
      'A in an app that has only loaded nestjs-cls (AsyncLocalStorage enabled)',
    diagnostic: true,
  },
  {
    key: 'A+clsmod',
    server: 'plain-clsmod',
    path: '/a',
    label:
      'A in an app with ClsModule.forRoot({ global: true }) (as the library registers it)',
    diagnostic: true,
  },
  {
    key: 'B-clsmod',
    server: 'lib-noclsmod',
    path: '/b',
    label:
      'B with TransactionalModule.forRoot({ registerClsModule: false }), no ClsModule',
    diagnostic: true,
  },
  {
    key: 'B-intcp',
    server: 'lib-noclsmod',
    path: '/e',
    label:
      'B-clsmod without @Transactional: TransactionHost.withTransaction() in the handler (no interceptor)',
    diagnostic: true,
  },
];

/** Ratios reported when both variants ran: [numerator, denominator, meaning]. */
const RATIOS: [string, string, string][] = [
  ['B', 'A', 'library vs hand-written (the headline)'],
  ['C', 'A', 'insert-only floor vs A (what the job itself costs A)'],
  ["A'", 'A', 'hand-written route, app with vs without the library'],
  ['B', "A'", 'library vs hand-written, same app (per-request scope cost)'],
  ['D', 'B', 'nestjs-cls middleware mounted vs not'],
  ['A+als', 'A', 'cost of AsyncLocalStorage being enabled (nestjs-cls loaded)'],
  [
    'A+clsmod',
    'A',
    "cost of ClsModule.forRoot's global no-op guard + interceptor",
  ],
  ['B-clsmod', 'A', 'library without ClsModule.forRoot vs hand-written'],
  ['B-clsmod', 'B', 'library without vs with ClsModule.forRoot'],
  ['B-intcp', 'A', 'library scope alone (no interceptor, no ClsModule) vs A'],
  ['B-clsmod', 'B-intcp', '@Transactional (interceptor) vs withTransaction()'],
];

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`${name} must be a positive integer, got "${raw}"`);
  }
  return value;
}

const REQUESTS = intEnv('BENCH_REQUESTS', 300);
const ROUNDS = intEnv('BENCH_ROUNDS', 10);
const CONCURRENCY = intEnv('BENCH_CONCURRENCY', 16);
const WARMUP = intEnv('BENCH_WARMUP', 400);
const POOL_SIZE = intEnv('BENCH_POOL_SIZE', 20);
const SELECTED = (
  process.env.BENCH_VARIANTS ??
  VARIANTS.filter((v) => !v.diagnostic)
    .map((v) => v.key)
    .join(',')
)
  .split(',')
  .map((key) => key.trim())
  .filter(Boolean);
/** Directory for `--cpu-prof` output of the server processes, when set. */
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF;

const RUN_ID = `${process.pid}-${Date.now().toString(36)}`;
const TABLE = `bench_overhead_${RUN_ID.replace(/-/g, '_')}`;

interface Server {
  mode: ServerMode;
  child: ChildProcess;
  port: number;
  agent: http.Agent;
  /** Resolvers of outstanding `cpu` requests, answered in order. */
  cpuWaiters: ((micros: number) => void)[];
  stopped?: Extract<ServerMessage, { type: 'stopped' }>;
}

/** One measured segment of a variant, with the server process's CPU time it used. */
interface Measured extends SegmentResult {
  /** Server-process CPU (user + system) per request, in microseconds. */
  cpuUsPerRequest: number;
}

/** The server process's CPU time so far (user + system), in microseconds. */
function serverCpu(server: Server): Promise<number> {
  return new Promise((resolve) => {
    server.cpuWaiters.push(resolve);
    server.child.send({ type: 'cpu' } satisfies OrchestratorMessage);
  });
}

function log(line: string) {
  process.stderr.write(`${line}\n`);
}

async function withPg<T>(database: string, fn: (client: Client) => Promise<T>) {
  const client = new Client({ connectionString: databaseUrl(database) });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function setUpDatabase() {
  await withPg('postgres', async (client) => {
    const { rowCount } = await client.query(
      `SELECT 1 FROM pg_database WHERE datname = 'transactional_test'`,
    );
    if (!rowCount) {
      await client
        .query('CREATE DATABASE transactional_test')
        .catch((error: { code?: string }) => {
          // NOTE: another process may have created it in between.
          if (error.code !== '42P04') throw error;
        });
    }
  });
  await withPg('transactional_test', (client) =>
    client.query(createTableSql(TABLE)),
  );
}

async function countRowsAndDropTable(): Promise<number | undefined> {
  return withPg('transactional_test', async (client) => {
    const result = await client
      .query(`SELECT count(*)::int AS n FROM "${TABLE}"`)
      .catch(() => undefined);
    await client.query(`DROP TABLE IF EXISTS "${TABLE}"`);
    return result?.rows[0]?.n as number | undefined;
  });
}

/** Every server process started, ready or not, so that a failed start leaves none behind. */
const children: ChildProcess[] = [];

function startServer(mode: ServerMode): Promise<Server> {
  const root = path.resolve(__dirname, '..');
  const execArgv = ['-r', 'ts-node/register/transpile-only'];
  if (CPU_PROF_DIR) {
    execArgv.unshift(
      '--cpu-prof',
      `--cpu-prof-dir=${path.resolve(CPU_PROF_DIR)}`,
      `--cpu-prof-name=${mode}-${RUN_ID}.cpuprofile`,
    );
  }
  const child = fork(path.join(__dirname, 'support', 'server.ts'), [], {
    cwd: root,
    execArgv,
    env: {
      ...process.env,
      BENCH_MODE: mode,
      BENCH_RUN_ID: RUN_ID,
      BENCH_TABLE: TABLE,
      BENCH_POOL_SIZE: String(POOL_SIZE),
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`server "${mode}" did not start in 90 s`)),
      90_000,
    );
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server "${mode}" exited with ${code} before ready`));
    });
    child.on('message', (message: ServerMessage) => {
      if (message.type === 'error') {
        clearTimeout(timer);
        reject(new Error(`server "${mode}": ${message.message}`));
      }
      if (message.type === 'ready') {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        const server: Server = {
          mode,
          child,
          port: message.port,
          agent: new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY }),
          cpuWaiters: [],
        };
        child.on('message', (reply: ServerMessage) => {
          if (reply.type === 'cpu')
            server.cpuWaiters.shift()?.(reply.user + reply.system);
        });
        resolve(server);
      }
    });
  });
}

async function stopServer(server: Server): Promise<void> {
  server.agent.destroy();
  if (server.child.exitCode !== null || !server.child.connected) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      log(`server "${server.mode}" did not exit in 30 s; killing it`);
      server.child.kill('SIGKILL');
    }, 30_000);
    server.child.on('message', (message: ServerMessage) => {
      if (message.type === 'stopped') server.stopped = message;
      if (message.type === 'error')
        log(`server "${server.mode}": ${message.message}`);
    });
    server.child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    server.child.send({ type: 'stop' } satisfies OrchestratorMessage);
  });
}

function fmt(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '-';
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) =>
    Math.max(...rows.map((row) => row[i].length)),
  );
  return rows
    .map((row) =>
      row
        .map((cell, i) =>
          i === row.length - 1 ? cell : cell.padEnd(widths[i]),
        )
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

let interrupted = false;
process.once('SIGINT', () => {
  interrupted = true;
  log(
    'interrupted: finishing this round, then cleaning up (Ctrl-C again to abort)',
  );
});

async function main() {
  const variants = SELECTED.map((key) => {
    const variant = VARIANTS.find((v) => v.key === key);
    if (!variant) {
      throw new Error(
        `BENCH_VARIANTS: unknown variant "${key}" (known: ${VARIANTS.map((v) => v.key).join(', ')})`,
      );
    }
    return variant;
  });
  const modes = [...new Set(variants.map((v) => v.server))];
  const sent = new Map<string, number>(variants.map((v) => [v.key, 0]));
  const rounds = new Map<string, Measured[]>(variants.map((v) => [v.key, []]));
  const servers = new Map<ServerMode, Server>();
  const startedAt = new Date();
  /** 1-minute load average, sampled at the start and after every round. */
  const loads = [os.loadavg()[0]];
  let rowCount: number | undefined;

  log(
    `bench: ${variants.map((v) => v.key).join(', ')}; ${ROUNDS} rounds x ${REQUESTS} requests, ` +
      `concurrency ${CONCURRENCY}, warm-up ${WARMUP} per variant`,
  );
  await setUpDatabase();
  try {
    const started = await Promise.allSettled(modes.map(startServer));
    for (const result of started) {
      if (result.status === 'fulfilled') {
        servers.set(result.value.mode, result.value);
      }
    }
    const failed = started.find(
      (result): result is PromiseRejectedResult => result.status === 'rejected',
    );
    if (failed) throw failed.reason;
    const segment = async (
      variant: Variant,
      requests: number,
    ): Promise<Measured> => {
      const server = servers.get(variant.server)!;
      const cpuBefore = await serverCpu(server);
      const result = await runSegment(
        server.agent,
        server.port,
        variant.path,
        requests,
        CONCURRENCY,
      );
      const cpuAfter = await serverCpu(server);
      sent.set(variant.key, sent.get(variant.key)! + requests);
      return { ...result, cpuUsPerRequest: (cpuAfter - cpuBefore) / requests };
    };

    for (const variant of variants) {
      if (interrupted) throw new Error('interrupted');
      const result = await segment(variant, WARMUP);
      log(`warm-up ${variant.key.padEnd(2)} ${fmt(result.rps, 0)} req/s`);
    }
    for (let round = 0; round < ROUNDS; round++) {
      if (interrupted) throw new Error('interrupted');
      // NOTE: forward, then backward (ABCD DCBA ...) so that drift over time cancels out.
      const order = round % 2 === 0 ? variants : [...variants].reverse();
      const line: string[] = [];
      for (const variant of order) {
        const result = await segment(variant, REQUESTS);
        rounds.get(variant.key)!.push(result);
        line.push(
          `${variant.key} ${fmt(result.rps, 0)} (${fmt(result.cpuUsPerRequest, 0)} us)`,
        );
      }
      loads.push(os.loadavg()[0]);
      log(
        `round ${round + 1}/${ROUNDS}: ${line.join(', ')} req/s (server CPU/request)`,
      );
    }
  } finally {
    await Promise.all([...servers.values()].map(stopServer));
    const ready = new Set([...servers.values()].map((s) => s.child));
    for (const child of children) {
      if (!ready.has(child) && child.exitCode === null) child.kill('SIGKILL');
    }
    rowCount = await countRowsAndDropTable().catch((error: unknown) => {
      log(`dropping table ${TABLE} failed: ${String(error)}`);
      return undefined;
    });
  }

  // ---- report ----
  const summary = variants.map((variant) => {
    const segments = rounds.get(variant.key)!;
    const rpsList = segments.map((s) => s.rps);
    const all = segments.flatMap((s) => s.latenciesMs).sort((a, b) => a - b);
    const server = servers.get(variant.server)!;
    const queue =
      variant.path === '/c'
        ? undefined
        : queueName(
            RUN_ID,
            variant.server,
            variant.path === '/a' ? 'plain' : 'aware',
          );
    return {
      key: variant.key,
      label: variant.label,
      server: variant.server,
      route: `POST ${variant.path}`,
      medianRps: median(rpsList),
      minRps: Math.min(...rpsList),
      maxRps: Math.max(...rpsList),
      p50Ms: percentile(all, 50),
      p99Ms: percentile(all, 99),
      medianCpuUsPerRequest: median(segments.map((s) => s.cpuUsPerRequest)),
      meanMs: all.reduce((a, b) => a + b, 0) / all.length,
      requestsSent: sent.get(variant.key)!,
      queue,
      jobsInQueue: queue ? server.stopped?.jobs[queue] : undefined,
      /** Requests sent by every variant that enqueues to this queue (B and B-intcp share one). */
      jobsExpected: 0,
      rounds: segments.map((s) => ({
        rps: s.rps,
        elapsedMs: s.elapsedMs,
        p50Ms: percentile(s.latenciesMs, 50),
        p99Ms: percentile(s.latenciesMs, 99),
        cpuUsPerRequest: s.cpuUsPerRequest,
      })),
    };
  });
  for (const s of summary) {
    s.jobsExpected = summary
      .filter((other) => other.queue === s.queue)
      .reduce((n, other) => n + other.requestsSent, 0);
  }
  const byKey = new Map(summary.map((s) => [s.key, s]));
  const ratios = RATIOS.filter(([a, b]) => byKey.has(a) && byKey.has(b)).map(
    ([a, b, meaning]) => {
      const [x, y] = [byKey.get(a)!, byKey.get(b)!];
      const perRound = x.rounds.map((r, i) => r.rps / y.rounds[i].rps);
      const cpuPerRound = x.rounds.map(
        (r, i) => r.cpuUsPerRequest / y.rounds[i].cpuUsPerRequest,
      );
      return {
        ratio: `${a}/${b}`,
        meaning,
        medianOfRounds: median(perRound),
        min: Math.min(...perRound),
        max: Math.max(...perRound),
        ratioOfMedians: x.medianRps / y.medianRps,
        p50LatencyRatio: x.p50Ms / y.p50Ms,
        perRound,
        cpuPerRequestRatio: {
          medianOfRounds: median(cpuPerRound),
          min: Math.min(...cpuPerRound),
          max: Math.max(...cpuPerRound),
          perRound: cpuPerRound,
        },
      };
    },
  );

  const out: string[] = [];
  out.push('');
  out.push(
    `nestjs-transactional-jobs overhead: ${ROUNDS} rounds x ${REQUESTS} requests per variant, ` +
      `concurrency ${CONCURRENCY}, keep-alive HTTP, warm-up ${WARMUP} per variant`,
  );
  out.push(
    `node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model.trim()}), ` +
      `pg pool ${POOL_SIZE} per app, load generator in the orchestrator process, ` +
      `each app in its own process`,
  );
  out.push(
    `1-min load average during the run: ${fmt(Math.min(...loads), 1)}..` +
      `${fmt(Math.max(...loads), 1)} (this run alone keeps about 2 busy on 2 CPUs; well above ` +
      `that, other processes competed: trust CPU/req ratios over req/s ratios)`,
  );
  out.push(
    'req/s ratio X/Y: median over rounds of X req/s / Y req/s in the same round (< 1: X is ' +
      'slower). CPU/req ratio: server-process CPU per request, X / Y (> 1: X costs more).',
  );
  out.push(
    'Worker side: NO Bull processor runs; jobs only accumulate in Redis, are counted, ' +
      'and the queues are obliterated at the end.',
  );
  out.push('');
  out.push(
    table([
      [
        'variant',
        'req/s median',
        'min..max',
        'p50 ms',
        'p99 ms',
        'CPU us/req',
        'jobs',
        'what',
      ],
      ...summary.map((s) => [
        s.key,
        fmt(s.medianRps, 0),
        `${fmt(s.minRps, 0)}..${fmt(s.maxRps, 0)}`,
        fmt(s.p50Ms, 2),
        fmt(s.p99Ms, 2),
        fmt(s.medianCpuUsPerRequest, 0),
        s.queue ? `${s.jobsInQueue ?? '?'}/${s.jobsExpected}` : '-',
        s.label,
      ]),
    ]),
  );
  out.push('');
  out.push(
    table([
      [
        'ratio',
        'req/s ratio',
        'rounds min..max',
        'CPU/req ratio',
        'rounds min..max',
        'p50 lat. ratio',
        'meaning',
      ],
      ...ratios.map((r) => [
        r.ratio,
        fmt(r.medianOfRounds, 3),
        `${fmt(r.min, 3)}..${fmt(r.max, 3)}`,
        fmt(r.cpuPerRequestRatio.medianOfRounds, 3),
        `${fmt(r.cpuPerRequestRatio.min, 3)}..${fmt(r.cpuPerRequestRatio.max, 3)}`,
        fmt(r.p50LatencyRatio, 3),
        r.meaning,
      ]),
    ]),
  );
  const problems: string[] = [];
  for (const s of summary) {
    if (s.queue && s.jobsInQueue !== s.jobsExpected) {
      problems.push(
        `${s.key}: ${s.jobsInQueue ?? '?'} jobs in queue ${s.queue} for ${s.jobsExpected} requests`,
      );
    }
  }
  const expectedRows = summary.reduce((n, s) => n + s.requestsSent, 0);
  if (rowCount !== expectedRows) {
    problems.push(
      `${rowCount ?? '?'} rows inserted for ${expectedRows} requests`,
    );
  }
  const libraryStats = Object.fromEntries(
    [...servers.values()]
      .filter((s) => s.stopped?.libraryStats)
      .map((s) => [s.mode, s.stopped!.libraryStats]),
  );
  out.push('');
  out.push(
    problems.length
      ? `CHECK FAILED: ${problems.join('; ')}`
      : `check: every request inserted its row and enqueued its job (${expectedRows} rows).`,
  );
  out.push(`library counters: ${JSON.stringify(libraryStats)}`);

  const resultsDir = path.join(__dirname, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const file = path.join(
    resultsDir,
    `overhead-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`,
  );
  writeFileSync(
    file,
    JSON.stringify(
      {
        startedAt: startedAt.toISOString(),
        finishedAt: new Date().toISOString(),
        config: {
          requests: REQUESTS,
          rounds: ROUNDS,
          concurrency: CONCURRENCY,
          warmup: WARMUP,
          poolSize: POOL_SIZE,
          variants: variants.map((v) => v.key),
          cpuProfileDir: CPU_PROF_DIR,
        },
        machine: {
          node: process.version,
          cpus: os.cpus().length,
          cpuModel: os.cpus()[0]?.model,
          loadavg: os.loadavg(),
          loadavg1mDuringRun: loads,
        },
        workerSide:
          'no Bull processor ran; jobs were counted, then obliterated',
        variants: summary,
        ratios,
        checks: { problems, rowsInserted: rowCount, libraryStats },
      },
      null,
      2,
    ),
  );
  out.push(`JSON: ${path.relative(process.cwd(), file)}`);
  process.stdout.write(`${out.join('\n')}\n`);
  if (problems.length) process.exitCode = 1;
}

main().catch((error: unknown) => {
  log(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
