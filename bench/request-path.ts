/**
 * `npm run bench`: the request path of every mode of `request-path/modes.ts` (hand-written, the
 * two peer libraries, ours), each in a Nest app of its own, loaded with autocannon from this
 * process, in interleaved rounds, under Node 20 and Node 24; tables on stdout, JSON, markdown and
 * SVG plots in bench/results/. See bench/README.md.
 */
import { mkdirSync, writeFileSync } from 'fs';
import Redis from 'ioredis';
import os from 'os';
import path from 'path';
import { Client } from 'pg';
import { DATABASE, databaseUrl, redisUrl } from './request-path/config';
import { intEnv, nodeBinary } from './request-path/env';
import { MODES, modeOf } from './request-path/modes';
import { barChart, latencyChart } from './request-path/plots';
import {
  SetResult,
  dropRunTables,
  ensureDatabase,
  runSet,
} from './request-path/run-set';
import {
  ModeSummary,
  Target,
  markdownTable,
  summarise,
  tableRows,
  targets,
  textTable,
} from './request-path/summary';

const SETTINGS = {
  rounds: intEnv('BENCH_ROUNDS', 5),
  durationSec: intEnv('BENCH_DURATION', 5),
  warmupSec: intEnv('BENCH_WARMUP', 3),
  connections: intEnv('BENCH_CONNECTIONS', 16),
  poolSize: intEnv('BENCH_POOL_SIZE', 10),
  probeSec: intEnv('BENCH_PROBE', 8, 0),
  fixedRate:
    process.env.BENCH_FIXED_RATE === undefined ||
    process.env.BENCH_FIXED_RATE === 'auto'
      ? ('auto' as const)
      : intEnv('BENCH_FIXED_RATE', 0, 0),
  modes: (
    process.env.BENCH_MODES ??
    MODES.filter((m) => !m.onRequest)
      .map((m) => m.key)
      .join(',')
  )
    .split(',')
    .map((k) => k.trim())
    .filter(Boolean),
  nodes: (process.env.BENCH_NODES ?? '20,24').split(',').map((n) => n.trim()),
  cpuProfDir: process.env.BENCH_CPU_PROF || undefined,
};

function log(line: string) {
  process.stderr.write(`${line}\n`);
}

async function serviceVersions() {
  const client = new Client({ connectionString: databaseUrl(DATABASE) });
  await client.connect();
  const { rows } = await client.query('SHOW server_version');
  await client.end();
  const redis = new Redis(redisUrl(), {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
  });
  await redis.connect();
  const info = await redis.info('server');
  redis.disconnect();
  return {
    postgres: String(rows[0].server_version),
    redis: /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown',
  };
}

function machine() {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model.trim(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
  };
}

function command(): string {
  const env = Object.entries(process.env)
    .filter(([k]) => /^BENCH_|^TEST_DB_SUFFIX$/.test(k))
    .map(([k, v]) => `${k}=${v}`);
  return [...env, 'npm run bench'].join(' ');
}

async function main() {
  const modes = SETTINGS.modes.map(modeOf);
  const runId = Date.now().toString(36);
  const startedAt = new Date();
  await ensureDatabase();
  await dropRunTables();
  const versions = await serviceVersions();
  log(
    `bench: modes ${modes.map((m) => m.key).join(',')}; Node ${SETTINGS.nodes.join(' and ')}; ` +
      `${SETTINGS.rounds} rounds x ${SETTINGS.durationSec} s per mode, ${SETTINGS.connections} connections, ` +
      `warm-up ${SETTINGS.warmupSec} s; Postgres ${versions.postgres}, Redis ${versions.redis}`,
  );
  const sets: { set: SetResult; summary: ModeSummary[]; targets: Target[] }[] =
    [];
  for (const major of SETTINGS.nodes) {
    const nodePath = nodeBinary(major);
    const set = await runSet(`${runId}_${major}`, {
      ...SETTINGS,
      modes,
      nodePath,
      log,
    });
    const summary = summarise(set);
    sets.push({ set, summary, targets: targets(set, summary) });
  }

  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const dir = path.resolve(
    process.env.BENCH_RESULTS_DIR ?? path.join(__dirname, 'results'),
  );
  const base = `request-path-${stamp}`;
  mkdirSync(dir, { recursive: true });
  const svgs = {
    rps: `${base}-rps.svg`,
    cpu: `${base}-cpu.svg`,
    ...Object.fromEntries(
      sets.map(({ set }) => [
        `latency ${set.node}`,
        `${base}-latency-${set.node}.svg`,
      ]),
    ),
  } as Record<string, string>;
  const bars = sets.map(({ set, summary }) => ({ node: set.node, summary }));
  writeFileSync(
    path.join(dir, svgs.rps),
    barChart(
      'Requests per second by mode (median of rounds)',
      'req/s',
      bars,
      (s) => ({
        value: s.medianRps,
        min: s.minRps,
        max: s.maxRps,
      }),
    ),
  );
  writeFileSync(
    path.join(dir, svgs.cpu),
    barChart(
      'Server CPU time per request by mode (median of rounds)',
      'us of CPU per request',
      bars,
      (s) => ({
        value: s.cpuUsPerRequest,
      }),
    ),
  );
  if (sets.some(({ set }) => set.fixedRateRps)) {
    svgs['cpu at a fixed rate'] = `${base}-cpu-fixed.svg`;
    writeFileSync(
      path.join(dir, svgs['cpu at a fixed rate']),
      barChart(
        `Server CPU time per request at a fixed rate (${sets.map(({ set }) => `${set.node}: ${set.fixedRateRps ?? '-'} req/s`).join(', ')}; median of rounds)`,
        'us of CPU per request',
        bars,
        (s) => ({ value: s.fixedCpuUsPerRequest ?? NaN }),
      ),
    );
  }
  for (const { set } of sets)
    writeFileSync(
      path.join(dir, svgs[`latency ${set.node}`]),
      latencyChart(set),
    );

  const header = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    command: command(),
    settings: SETTINGS,
    machine: machine(),
    versions,
    workerSide:
      'no Bull processor ran; jobs were counted and checked, then the queues obliterated',
  };
  writeFileSync(
    path.join(dir, `${base}.json`),
    JSON.stringify({ ...header, sets }, null, 2),
  );

  const problems = sets.flatMap(({ set }) =>
    set.problems.map((p) => `${set.node} ${p}`),
  );
  const text: string[] = [];
  const md: string[] = [
    `# Request path, ${header.startedAt}`,
    '',
    `Command: \`${header.command}\``,
    '',
    `Machine: ${header.machine.cpus} CPUs (${header.machine.cpuModel}), ${header.machine.memoryGiB} GiB, ` +
      `${header.machine.platform}; Postgres ${versions.postgres}, Redis ${versions.redis}. ` +
      `Settings: ${SETTINGS.rounds} rounds x ${SETTINGS.durationSec} s per mode, ` +
      `${SETTINGS.connections} connections, warm-up ${SETTINGS.warmupSec} s, pg pool ${SETTINGS.poolSize}.`,
    '',
  ];
  for (const { set, summary, targets: judged } of sets) {
    const loads = set.loadavg1m;
    const title =
      `Node ${set.node}: 1-min load average ${Math.min(...loads).toFixed(1)}..${Math.max(...loads).toFixed(1)} ` +
      `on ${header.machine.cpus} CPUs during the set`;
    const rows = tableRows(summary, set.fixedRateRps);
    text.push('', title, textTable(rows));
    md.push(`## ${title}`, '', markdownTable(rows), '');
    for (const [key, p] of [
      ['o1', set.probe],
      ['b2', set.baselineProbe],
      ['o1c', set.coalescedProbe],
    ] as const) {
      if (!p) continue;
      const line =
        `${key} commit-to-enqueued at ${p.offeredRps} req/s (half of o1's ${p.peakRps.toFixed(0)}; achieved ` +
        `${p.achievedRps.toFixed(0)}): p50 ${p.p50Ms.toFixed(2)} ms, p99 ${p.p99Ms.toFixed(2)} ms, ` +
        `p99.9 ${p.p999Ms.toFixed(2)} ms, max ${p.maxMs.toFixed(2)} ms (${p.samples} requests); ` +
        `event-loop delay p50 ${p.loopDelayMs.p50.toFixed(2)} ms, p99 ${p.loopDelayMs.p99.toFixed(2)} ms, ` +
        `max ${p.loopDelayMs.max.toFixed(2)} ms`;
      text.push(line);
      md.push(line, '');
    }
    for (const t of judged) {
      const line = `target (${set.node}): ${t.what}: ${t.measured}: ${t.met === undefined ? 'not measured' : t.met ? 'MET' : 'MISSED'}`;
      text.push(line);
      md.push(`- ${line}`);
    }
    md.push('');
  }
  const verdict = problems.length
    ? `CHECK FAILED: ${problems.join('; ')}`
    : 'check: in every mode every row has exactly one job in Redis and every job a row (warm-up and probe included)';
  text.push(
    '',
    verdict,
    `results in ${path.relative(process.cwd(), dir) || '.'}: ${base}.{json,md}, ${Object.values(svgs).join(', ')}`,
  );
  md.push(
    verdict,
    '',
    ...Object.entries(svgs).map(([what, file]) => `![${what}](${file})`),
    '',
  );
  writeFileSync(path.join(dir, `${base}.md`), md.join('\n'));
  process.stdout.write(`${text.join('\n')}\n`);
  if (problems.length) process.exitCode = 1;
}

main().catch((error: unknown) => {
  log(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
