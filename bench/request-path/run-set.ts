import { ChildProcess, execFileSync, fork } from 'child_process';
import os from 'os';
import path from 'path';
import { Client } from 'pg';
import {
  DATABASE,
  OrchestratorMessage,
  ServerMessage,
  createTableSql,
  databaseUrl,
  namesOf,
} from './config';
import { Segment, load, median, percentile } from './load';
import type { Mode } from './modes';

/** Settings of one set (every mode, under one Node binary). */
export interface SetOptions {
  /** The Node binary the servers run on. */
  nodePath: string;
  modes: readonly Mode[];
  rounds: number;
  durationSec: number;
  warmupSec: number;
  connections: number;
  poolSize: number;
  /** Length of the commit-to-enqueued probe of o1 at half its peak rate (0: no probe). */
  probeSec: number;
  /**
   * The rate (req/s) of the fixed-rate segment each mode gets in every round after its
   * saturated one: `'auto'` for half the slowest mode's warm-up rate (hello aside), 0 for none.
   */
  fixedRate: number | 'auto';
  /** Directory for `--cpu-prof` output of the servers, when set. */
  cpuProfDir?: string;
  log: (line: string) => void;
}

/** Percentiles kept for each mode's latency distribution. */
export const PERCENTILES = [1, 5, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100];

/** One mode's measurements in one set. */
export interface ModeResult {
  key: string;
  label: string;
  rounds: {
    rps: number;
    p50Ms: number;
    p99Ms: number;
    cpuUsPerRequest: number;
    responses: number;
    /** The same round's segment at the set's fixed rate (`SetResult.fixedRateRps`). */
    fixed?: { rps: number; p99Ms: number; cpuUsPerRequest: number };
  }[];
  /** Latency (ms) at each of `PERCENTILES`, over every measured response of the mode. */
  latency: Record<string, number>;
  responses: number;
  /** Correctness: rows in the mode's table, jobs in its queue, and what did not match. */
  check: {
    rows: number;
    jobs: number;
    problems: string[];
    /** o2: outbox rows, those left unmarked, and the marking UPDATEs that marked the rest. */
    outbox?: { rows: number; pending: number; markings: number };
  };
  stats?: Record<string, unknown>;
}

/** The commit-to-enqueued probe of o1. */
export interface ProbeResult {
  peakRps: number;
  offeredRps: number;
  achievedRps: number;
  samples: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** Response latency of the probe's requests. */
  responseP50Ms: number;
  responseP99Ms: number;
  /** The server's event-loop delay while probed (ms). */
  loopDelayMs: { p50: number; p99: number; max: number };
}

/** Everything one set measured. */
export interface SetResult {
  node: string;
  startedAt: string;
  finishedAt: string;
  /** 1-minute load average, at the start and after every round. */
  loadavg1m: number[];
  /**
   * The offered rate of every mode's fixed-rate segments: CPU per request compared at the same
   * load (at saturation, a mode that waits longer on Postgres answers fewer requests per
   * wake-up of its event loop, and pays that per request).
   */
  fixedRateRps?: number;
  modes: ModeResult[];
  probe?: ProbeResult;
  /** b2 probed the same way at the same rate: the hand-written code's after-COMMIT-to-enqueued. */
  baselineProbe?: ProbeResult;
  /** o1c (o1 with `coalesceEnqueues`), when it ran, probed at the same rate. */
  coalescedProbe?: ProbeResult;
  problems: string[];
}

/** A running server process of one mode. */
export interface Server {
  mode: Mode;
  child: ChildProcess;
  port: number;
  replies: Map<string, ((message: ServerMessage) => void)[]>;
}

/** Runs `fn` with a client connected to `database`, and disconnects. */
export async function withPg<T>(
  database: string,
  fn: (client: Client) => Promise<T>,
): Promise<T> {
  const client = new Client({ connectionString: databaseUrl(database) });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Drops every table of earlier runs (an interrupted run leaves its tables behind). */
export async function dropRunTables(): Promise<void> {
  await withPg(DATABASE, async (client) => {
    const { rows } = await client.query(
      `SELECT tablename FROM pg_tables WHERE tablename LIKE 'rp\\_%'`,
    );
    for (const { tablename } of rows)
      await client.query(`DROP TABLE IF EXISTS "${tablename}"`);
  });
}

/** Creates the benchmark database if missing. */
export async function ensureDatabase(): Promise<void> {
  await withPg('postgres', async (client) => {
    const { rowCount } = await client.query(
      'SELECT 1 FROM pg_database WHERE datname = $1',
      [DATABASE],
    );
    if (rowCount) return;
    await client
      .query(`CREATE DATABASE "${DATABASE}"`)
      .catch((error: { code?: string }) => {
        if (error.code !== '42P04') throw error; // NOTE: created by another process meanwhile.
      });
  });
}

/** Sends `message` to a server and resolves with its reply of type `reply`. */
export function request<T extends ServerMessage['type']>(
  server: Server,
  message: OrchestratorMessage,
  reply: T,
): Promise<Extract<ServerMessage, { type: T }>> {
  return new Promise((resolve) => {
    const waiting = server.replies.get(reply) ?? [];
    waiting.push(resolve as (message: ServerMessage) => void);
    server.replies.set(reply, waiting);
    server.child.send(message);
  });
}

/** How a server process is started. */
export type ServerOptions = Pick<
  SetOptions,
  'nodePath' | 'poolSize' | 'cpuProfDir' | 'log'
> & {
  /**
   * A program the server runs under (e.g. valgrind and its options): the server's command
   * becomes `wrapper[0] ...wrapper[1..] node ...nodeFlags server.ts`.
   */
  wrapper?: string[];
  /** Extra flags of the Node binary. */
  nodeFlags?: string[];
  /**
   * server.ts compiled to JavaScript (run without ts-node, whose TypeScript compiler would
   * otherwise stay in the server's heap); default: server.ts under ts-node.
   */
  compiledServer?: string;
  /** Extra environment of the server. */
  env?: Record<string, string>;
};

/** Starts the server of one mode and resolves once it listens. */
export function startServer(
  mode: Mode,
  runId: string,
  options: ServerOptions,
  children: ChildProcess[],
): Promise<Server> {
  const execArgv = [
    ...(options.nodeFlags ?? []),
    ...(options.compiledServer
      ? []
      : ['-r', 'ts-node/register/transpile-only']),
  ];
  if (options.cpuProfDir) {
    execArgv.unshift(
      '--cpu-prof',
      `--cpu-prof-dir=${path.resolve(options.cpuProfDir)}`,
      `--cpu-prof-name=${mode.key}-${runId}.cpuprofile`,
    );
  }
  const [execPath, ...wrapperArgs] = options.wrapper ?? [options.nodePath];
  const script = options.compiledServer ?? path.join(__dirname, 'server.ts');
  const child = fork(script, [], {
    cwd: path.resolve(__dirname, '..', '..'),
    execPath,
    execArgv: options.wrapper
      ? [...wrapperArgs, options.nodePath, ...execArgv]
      : execArgv,
    env: {
      ...process.env,
      ...options.env,
      BENCH_MODE: mode.key,
      BENCH_RUN_ID: runId,
      BENCH_TABLE: namesOf(runId, mode.key).table,
      BENCH_POOL_SIZE: String(options.poolSize),
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`server ${mode.key} did not start in 600 s`)),
      600_000,
    );
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(
        new Error(`server ${mode.key} exited with ${code} before it was ready`),
      );
    });
    const server: Server = { mode, child, port: 0, replies: new Map() };
    child.on('message', (message: ServerMessage) => {
      if (message.type === 'error') {
        clearTimeout(timer);
        reject(new Error(`server ${mode.key}: ${message.message}`));
        options.log(`server ${mode.key}: ${message.message}`);
      } else if (message.type === 'ready') {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        server.port = message.port;
        resolve(server);
      } else {
        server.replies.get(message.type)?.shift()?.(message);
      }
    });
  });
}

async function cpuMicros(server: Server): Promise<number> {
  const usage = await request(server, { type: 'cpu' }, 'cpu');
  return usage.user + usage.system;
}

async function measure(
  server: Server,
  options: SetOptions,
  durationSec: number,
  overallRate?: number,
) {
  const before = await cpuMicros(server);
  const segment: Segment = await load(server.port, {
    connections: options.connections,
    durationSec,
    overallRate,
  });
  const after = await cpuMicros(server);
  return { segment, cpuUsPerRequest: (after - before) / segment.responses };
}

/**
 * Checks one mode after its server stopped: every row has exactly one job and every job a row
 * (or, for a mode that does not enqueue, no job), and o2's outbox has a row per row; then drops
 * the mode's tables.
 */
export async function checkMode(
  client: Client,
  runId: string,
  mode: Mode,
  stopped: Extract<ServerMessage, { type: 'stopped' }> | undefined,
): Promise<ModeResult['check']> {
  const names = namesOf(runId, mode.key);
  const { rows } = await client.query(`SELECT id FROM "${names.table}"`);
  const rowIds = new Set<number>(rows.map((r: { id: number }) => r.id));
  const jobIds = stopped?.jobIds ?? [];
  const check: ModeResult['check'] = {
    rows: rowIds.size,
    jobs: jobIds.length,
    problems: [],
  };
  // Warm-up and probe requests count too: every request the server answered.
  if (mode.enqueues) {
    const seen = new Set<number>();
    for (const id of jobIds) {
      if (seen.has(id)) check.problems.push(`job for row ${id} twice`);
      else if (!rowIds.has(id))
        check.problems.push(`job for row ${id}, which does not exist`);
      seen.add(id);
    }
    const missing = [...rowIds].filter((id) => !seen.has(id));
    if (missing.length) {
      check.problems.push(
        `${missing.length} rows without a job (ids ${missing.slice(0, 5).join(', ')}; Bull's counts: ${JSON.stringify(stopped?.jobCounts)})`,
      );
    }
  } else if (jobIds.length) {
    check.problems.push(`${jobIds.length} jobs from a mode that enqueues none`);
  }
  if (mode.inserts && rowIds.size === 0)
    check.problems.push('no rows inserted');
  if (mode.key === 'o2' || mode.key === 'o2c') {
    const { rows: outbox } = await client.query(
      // NOTE: each marking UPDATE is a transaction of its own, so the rows it marked share an xmin.
      `SELECT count(*)::int AS rows, count(*) FILTER (WHERE dispatched_at IS NULL)::int AS pending,
         count(DISTINCT xmin::text) FILTER (WHERE dispatched_at IS NOT NULL)::int AS markings
       FROM "${names.outboxTable}"`,
    );
    check.outbox = outbox[0];
    if (outbox[0].rows !== rowIds.size) {
      check.problems.push(
        `${outbox[0].rows} outbox rows for ${rowIds.size} rows`,
      );
    }
    await client.query(`DROP TABLE IF EXISTS "${names.outboxTable}"`);
  }
  await client.query(`DROP TABLE IF EXISTS "${names.table}"`);
  return check;
}

/**
 * Sends `POST /probe` to `server` at `offeredRps` for `options.probeSec` and collects its
 * commit-to-enqueued times and its event loop's delay meanwhile.
 */
async function probeServer(
  server: Server,
  peakRps: number,
  offeredRps: number,
  options: SetOptions,
): Promise<ProbeResult> {
  server.child.send({ type: 'probe', on: true } satisfies OrchestratorMessage);
  const segment = await load(server.port, {
    connections: options.connections,
    durationSec: options.probeSec,
    overallRate: offeredRps,
    path: '/probe',
  });
  const { ms, loopDelayMs } = await request(
    server,
    { type: 'probe', on: false },
    'probe',
  );
  ms.sort((a, b) => a - b);
  return {
    peakRps,
    offeredRps,
    achievedRps: segment.rps,
    samples: ms.length,
    p50Ms: percentile(ms, 50),
    p99Ms: percentile(ms, 99),
    p999Ms: percentile(ms, 99.9),
    maxMs: ms[ms.length - 1],
    responseP50Ms: percentile(segment.latenciesMs, 50),
    responseP99Ms: percentile(segment.latenciesMs, 99),
    loopDelayMs,
  };
}

/** Runs every mode of `options.modes` under one Node binary: warm-up, interleaved rounds, probe, checks. */
export async function runSet(
  runId: string,
  options: SetOptions,
): Promise<SetResult> {
  const { modes, log } = options;
  const startedAt = new Date().toISOString();
  const loads = [os.loadavg()[0]];
  const problems: string[] = [];
  await ensureDatabase();
  await withPg(DATABASE, async (client) => {
    for (const mode of modes)
      await client.query(createTableSql(namesOf(runId, mode.key).table));
  });
  const children: ChildProcess[] = [];
  const servers = new Map<string, Server>();
  const rounds = new Map<string, ModeResult['rounds']>(
    modes.map((m) => [m.key, []]),
  );
  const latencies = new Map<string, number[][]>(modes.map((m) => [m.key, []]));
  const stopped = new Map<
    string,
    Extract<ServerMessage, { type: 'stopped' }>
  >();
  let probe: ProbeResult | undefined;
  let baselineProbe: ProbeResult | undefined;
  let coalescedProbe: ProbeResult | undefined;
  let fixedRateRps: number | undefined;
  let node = '';
  let failed = true;
  try {
    for (const server of await Promise.all(
      modes.map((m) => startServer(m, runId, options, children)),
    )) {
      servers.set(server.mode.key, server);
    }
    node = execFileSync(options.nodePath, ['-p', 'process.version'])
      .toString()
      .trim();
    log(
      `${node}: ${modes.length} servers ready; warm-up ${options.warmupSec} s each`,
    );
    const warmRps: number[] = [];
    for (const mode of modes) {
      const { segment } = await measure(
        servers.get(mode.key)!,
        options,
        options.warmupSec,
      );
      if (mode.inserts) warmRps.push(segment.rps);
      log(`  warm-up ${mode.key.padEnd(5)} ${segment.rps.toFixed(0)} req/s`);
    }
    fixedRateRps =
      options.fixedRate === 'auto'
        ? Math.max(10, Math.round(Math.min(...warmRps) / 20) * 10)
        : options.fixedRate || undefined;
    if (fixedRateRps) log(`  fixed-rate segments at ${fixedRateRps} req/s`);
    for (let round = 0; round < options.rounds; round++) {
      // NOTE: the order is rotated each round, so that drift over time hits every mode alike.
      const order = modes.map((_, i) => modes[(i + round) % modes.length]);
      const line: string[] = [];
      for (const mode of order) {
        const { segment, cpuUsPerRequest } = await measure(
          servers.get(mode.key)!,
          options,
          options.durationSec,
        );
        const fixed = fixedRateRps
          ? await measure(
              servers.get(mode.key)!,
              options,
              options.durationSec,
              fixedRateRps,
            )
          : undefined;
        rounds.get(mode.key)!.push({
          rps: segment.rps,
          p50Ms: percentile(segment.latenciesMs, 50),
          p99Ms: percentile(segment.latenciesMs, 99),
          cpuUsPerRequest,
          responses: segment.responses,
          fixed: fixed && {
            rps: fixed.segment.rps,
            p99Ms: percentile(fixed.segment.latenciesMs, 99),
            cpuUsPerRequest: fixed.cpuUsPerRequest,
          },
        });
        latencies.get(mode.key)!.push(segment.latenciesMs);
        line.push(
          `${mode.key} ${segment.rps.toFixed(0)}/${cpuUsPerRequest.toFixed(0)}us` +
            (fixed ? ` ${fixed.cpuUsPerRequest.toFixed(0)}us@fixed` : ''),
        );
      }
      loads.push(os.loadavg()[0]);
      log(
        `  round ${round + 1}/${options.rounds} (load ${os.loadavg()[0].toFixed(1)}): ${line.join(' ')}`,
      );
    }
    const o1 = servers.get('o1');
    if (o1 && options.probeSec > 0) {
      const peakRps = median(rounds.get('o1')!.map((r) => r.rps));
      const offeredRps = Math.max(1, Math.round(peakRps / 2));
      probe = await probeServer(o1, peakRps, offeredRps, options);
      const b2 = servers.get('b2');
      // NOTE: b2 at o1's rate, so that the two tails compare at the same load.
      if (b2) {
        baselineProbe = await probeServer(b2, peakRps, offeredRps, options);
      }
      const o1c = servers.get('o1c');
      if (o1c) {
        coalescedProbe = await probeServer(o1c, peakRps, offeredRps, options);
      }
      for (const [key, p] of [
        ['o1', probe],
        ['b2', baselineProbe],
        ['o1c', coalescedProbe],
      ] as const) {
        if (!p) continue;
        log(
          `  probe ${key} at ${offeredRps} req/s (half of o1's ${peakRps.toFixed(0)}): commit-to-enqueued ` +
            `p50 ${p.p50Ms.toFixed(2)} ms, p99 ${p.p99Ms.toFixed(2)} ms (${p.samples} samples); ` +
            `event-loop delay p99 ${p.loopDelayMs.p99.toFixed(2)} ms, max ${p.loopDelayMs.max.toFixed(2)} ms`,
        );
      }
    }
    failed = false;
  } finally {
    await Promise.all(
      [...servers.values()].map(async (server) => {
        const timer = setTimeout(() => server.child.kill('SIGKILL'), 60_000);
        try {
          stopped.set(
            server.mode.key,
            await request(server, { type: 'stop' }, 'stopped'),
          );
          // NOTE: a server profiled with --cpu-prof writes its profile as it exits.
          if (server.child.exitCode === null) {
            await new Promise((resolve) => server.child.once('exit', resolve));
          }
        } finally {
          clearTimeout(timer);
        }
      }),
    ).catch((error: unknown) =>
      problems.push(`stopping the servers: ${String(error)}`),
    );
    for (const child of children)
      if (child.exitCode === null) child.kill('SIGKILL');
    if (failed) await dropRunTables();
  }

  const results: ModeResult[] = [];
  await withPg(DATABASE, async (client) => {
    for (const mode of modes) {
      const modeRounds = rounds.get(mode.key)!;
      const all = latencies
        .get(mode.key)!
        .flat()
        .sort((a, b) => a - b);
      const check = await checkMode(client, runId, mode, stopped.get(mode.key));
      for (const problem of check.problems.slice(0, 5))
        problems.push(`${mode.key}: ${problem}`);
      results.push({
        key: mode.key,
        label: mode.label,
        rounds: modeRounds,
        latency: Object.fromEntries(
          PERCENTILES.map((p) => [String(p), percentile(all, p)]),
        ),
        responses: all.length,
        check,
        stats: stopped.get(mode.key)?.stats,
      });
    }
  });
  return {
    node,
    startedAt,
    finishedAt: new Date().toISOString(),
    loadavg1m: loads,
    fixedRateRps,
    modes: results,
    probe,
    baselineProbe,
    coalescedProbe,
    problems,
  };
}
