/**
 * `npm run bench:instructions`: the request path's cost per request in CPU instructions, counted
 * by valgrind's callgrind, for every mode of `request-path/modes.ts`. Time-based CPU per request
 * (`npm run bench`) drifts by 1.5x within minutes on a shared machine; an instruction count does
 * not depend on what else runs, so it can tell a 3% difference apart. See bench/README.md.
 */
import { ChildProcess, execFile, execFileSync } from 'child_process';
import {
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'fs';
import http from 'http';
import os from 'os';
import path from 'path';
import { InstructionSplit, splitDump } from './request-path/callgrind-split';
import { DATABASE, createTableSql, namesOf } from './request-path/config';
import { intEnv, nodeBinary } from './request-path/env';
import { MODES, Mode, modeOf } from './request-path/modes';
import { markdownTable, textTable } from './request-path/summary';
import {
  ModeResult,
  Server,
  checkMode,
  dropRunTables,
  ensureDatabase,
  request,
  startServer,
  withPg,
} from './request-path/run-set';

const SETTINGS = {
  /** Requests before counting starts (JIT tiers up, pools fill). */
  warmup: intEnv('INSTR_WARMUP', 1500),
  /** Counted windows per mode, and requests per window. */
  windows: intEnv('INSTR_WINDOWS', 6),
  requests: intEnv('INSTR_REQUESTS', 500),
  /** Requests in flight at once (1: one after the other, the same path every time). */
  connections: intEnv('INSTR_CONNECTIONS', 1),
  /** Servers counted at the same time (the counts do not depend on the machine's load). */
  parallel: intEnv('INSTR_PARALLEL', os.cpus().length),
  poolSize: intEnv('BENCH_POOL_SIZE', 10),
  /**
   * o2's outbox marking delay (ms) under valgrind: the library's 25 ms scaled by valgrind's
   * slowdown, so that one marking UPDATE covers as many requests as at native speed.
   */
  markDelayMs: intEnv('INSTR_MARK_DELAY_MS', 500),
  modes: (
    process.env.BENCH_MODES ??
    MODES.filter((m) => m.key !== 'hello')
      .map((m) => m.key)
      .join(',')
  )
    .split(',')
    .map((k) => k.trim())
    .filter(Boolean),
  nodes: (process.env.BENCH_NODES ?? '24,20').split(',').map((n) => n.trim()),
};

function log(line: string) {
  process.stderr.write(`${line}\n`);
}

/** `callgrind_control <args> <pid>`; rejects unless it answers OK. */
function callgrindControl(args: string[], pid: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('callgrind_control', [...args, String(pid)], (error, stdout) => {
      if (error) return reject(error);
      if (!/OK/.test(stdout)) {
        return reject(
          new Error(`callgrind_control ${args.join(' ')}: ${stdout.trim()}`),
        );
      }
      resolve();
    });
  });
}

/** Callgrind's newest dump of `base` (`<base>.<n>`, n counting up from 1): its total and split. */
function newestDump(
  dir: string,
  base: string,
): { total: number; split: InstructionSplit } {
  const dumps = readdirSync(dir)
    .filter((f) => f.startsWith(`${base}.`) && /\.\d+$/.test(f))
    .sort((a, b) => Number(a.split('.').pop()) - Number(b.split('.').pop()));
  const newest = dumps[dumps.length - 1];
  if (!newest) throw new Error(`no callgrind dump of ${base} in ${dir}`);
  const totals = /^totals:\s+(\d+)/m.exec(
    readFileSync(path.join(dir, newest), 'utf8'),
  );
  if (!totals) throw new Error(`no totals line in ${newest}`);
  return {
    total: Number(totals[1]),
    split: splitDump(path.join(dir, newest)),
  };
}

/** `count` requests `POST /r`, `connections` in flight at once; rejects on any status but 201. */
async function send(
  port: number,
  count: number,
  connections: number,
): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  let next = 0;
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port, method: 'POST', path: '/r', agent },
        (res) => {
          res.resume();
          res.on('end', () =>
            res.statusCode === 201
              ? resolve()
              : reject(new Error(`POST /r answered ${res.statusCode}`)),
          );
        },
      );
      req.on('error', reject);
      req.end();
    });
  const lane = async () => {
    while (next < count) {
      next++;
      await one();
    }
  };
  try {
    await Promise.all(Array.from({ length: connections }, lane));
  } finally {
    agent.destroy();
  }
}

/** What one mode counted. */
interface Counted {
  key: string;
  label: string;
  /** Instructions per request in each window. */
  windows: number[];
  /** The same, split by what V8 spent them on (`callgrind-split.ts`). */
  splits: InstructionSplit[];
  /** Wall time per counted request under valgrind (with the dumps between windows). */
  msPerRequest: number;
  check: ModeResult['check'];
}

/**
 * Compiles server.ts (and what it imports from bench/request-path) to JavaScript in `outDir`:
 * under ts-node the TypeScript compiler stays in the server's heap, and every major garbage
 * collection marks it, which no user's server pays.
 */
function compileServer(outDir: string): string {
  const root = path.resolve(__dirname, '..');
  const tsconfig = path.join(outDir, 'tsconfig.json');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(
    tsconfig,
    JSON.stringify({
      extends: path.join(root, 'tsconfig.json'),
      compilerOptions: {
        outDir,
        rootDir: path.join(__dirname, 'request-path'),
        declaration: false,
        sourceMap: false,
      },
      files: [path.join(__dirname, 'request-path', 'server.ts')],
      include: [],
    }),
  );
  execFileSync(
    path.join(root, 'node_modules', '.bin', 'tsc'),
    ['-p', tsconfig],
    {
      cwd: root,
      stdio: 'inherit',
    },
  );
  return path.join(outDir, 'server.js');
}

async function countMode(
  mode: Mode,
  runId: string,
  nodePath: string,
  dumpDir: string,
  compiledServer: string,
): Promise<Counted> {
  const base = `${mode.key}.callgrind`;
  const children: ChildProcess[] = [];
  let server: Server | undefined;
  const windows: number[] = [];
  const splits: InstructionSplit[] = [];
  try {
    server = await startServer(
      mode,
      runId,
      {
        nodePath,
        poolSize: SETTINGS.poolSize,
        log,
        compiledServer,
        // NOTE: --single-threaded: V8 compiles and collects garbage on the main thread, so the
        // count is the same from one run to the next (concurrent helper threads make it drift).
        nodeFlags: ['--single-threaded'],
        env: { BENCH_OUTBOX_MARK_DELAY_MS: String(SETTINGS.markDelayMs) },
        wrapper: [
          'valgrind',
          '--tool=callgrind',
          '--instr-atstart=no',
          `--callgrind-out-file=${path.join(dumpDir, base)}`,
          '--log-file=/dev/null',
        ],
      },
      children,
    );
    const pid = server.child.pid!;
    log(`  ${mode.key}: ready; ${SETTINGS.warmup} requests of warm-up`);
    await send(server.port, SETTINGS.warmup, SETTINGS.connections);
    await callgrindControl(['--instr=on'], pid);
    // NOTE: some requests with instrumentation on before counting: the switch drops translations.
    await send(
      server.port,
      Math.min(200, SETTINGS.requests),
      SETTINGS.connections,
    );
    await callgrindControl(['--zero'], pid);
    const countingFrom = performance.now();
    for (let w = 0; w < SETTINGS.windows; w++) {
      await send(server.port, SETTINGS.requests, SETTINGS.connections);
      await callgrindControl(['--dump'], pid);
      const { total, split } = newestDump(dumpDir, base);
      windows.push(total / SETTINGS.requests);
      splits.push({
        gc: split.gc / SETTINGS.requests,
        compile: split.compile / SETTINGS.requests,
        program: split.program / SETTINGS.requests,
      });
    }
    const msPerRequest =
      (performance.now() - countingFrom) /
      (SETTINGS.windows * SETTINGS.requests);
    await callgrindControl(['--instr=off'], pid);
    log(
      `  ${mode.key}: ${windows.map((n) => (n / 1000).toFixed(0)).join(' ')} thousand instructions per request; ` +
        `${msPerRequest.toFixed(1)} ms per request under valgrind`,
    );
    const stopped = await request(server, { type: 'stop' }, 'stopped');
    if (server.child.exitCode === null) {
      await new Promise((resolve) => server!.child.once('exit', resolve));
    }
    const check = await withPg(DATABASE, (client) =>
      checkMode(client, runId, mode, stopped),
    );
    return {
      key: mode.key,
      label: mode.label,
      windows,
      splits,
      msPerRequest,
      check,
    };
  } finally {
    for (const child of children)
      if (child.exitCode === null) child.kill('SIGKILL');
  }
}

async function countSet(
  runId: string,
  nodePath: string,
  modes: Mode[],
  dumpDir: string,
  compiledServer: string,
) {
  await withPg(DATABASE, async (client) => {
    for (const mode of modes)
      await client.query(createTableSql(namesOf(runId, mode.key).table));
  });
  const results = new Map<string, Counted>();
  const queue = [...modes];
  const worker = async () => {
    for (let mode = queue.shift(); mode; mode = queue.shift()) {
      results.set(
        mode.key,
        await countMode(mode, runId, nodePath, dumpDir, compiledServer),
      );
    }
  };
  try {
    await Promise.all(Array.from({ length: SETTINGS.parallel }, worker));
  } catch (error) {
    await dropRunTables();
    throw error;
  }
  return modes.map((m) => results.get(m.key)!);
}

/** Mean of the windows: every window has as many requests, so this is instructions / requests. */
function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/** Mean of one part of the split over the windows. */
function meanOf(splits: InstructionSplit[], part: keyof InstructionSplit) {
  return mean(splits.map((s) => s[part]));
}

function rowsOf(counted: Counted[]): string[][] {
  const baseline = counted.find((c) => c.key === 'b2');
  const b2 = baseline ? mean(baseline.windows) : NaN;
  const b2Program = baseline ? meanOf(baseline.splits, 'program') : NaN;
  const k = (n: number) => (n / 1000).toFixed(1);
  return [
    [
      'mode',
      'k instr/req',
      'windows min..max',
      'x b2',
      'GC',
      'compile',
      'program',
      'program x b2',
      'program median x b2',
      'rows = jobs',
    ],
    ...counted.map((c) => {
      const m = mean(c.windows);
      const program = meanOf(c.splits, 'program');
      return [
        c.key,
        k(m),
        `${k(Math.min(...c.windows))}..${k(Math.max(...c.windows))}`,
        Number.isNaN(b2) ? '-' : (m / b2).toFixed(3),
        k(meanOf(c.splits, 'gc')),
        k(meanOf(c.splits, 'compile')),
        k(program),
        Number.isNaN(b2Program) ? '-' : (program / b2Program).toFixed(3),
        baseline
          ? (medianProgram(c) / medianProgram(baseline)).toFixed(3)
          : '-',
        c.check.problems.length
          ? `FAILED: ${c.check.problems.join('; ')}`
          : c.check.jobs
            ? `ok ${c.check.rows} = ${c.check.jobs}${markings(c.check)}`
            : `ok ${c.check.rows} rows, no jobs`,
      ];
    }),
  ];
}

/** The median window's program instructions: a window a major GC or a compile batch spilled into counts once. */
function medianProgram(counted: Counted): number {
  const sorted = counted.splits.map((s) => s.program).sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** o2: how many rows one marking UPDATE marked, on average. */
function markings(check: Counted['check']): string {
  const outbox = check.outbox;
  if (!outbox?.markings) return '';
  const rows = (outbox.rows - outbox.pending) / outbox.markings;
  return `; ${rows.toFixed(1)} rows per marking UPDATE`;
}

async function main() {
  execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
  const modes = SETTINGS.modes.map(modeOf);
  const runId = `i${Date.now().toString(36)}`;
  const startedAt = new Date();
  await ensureDatabase();
  await dropRunTables();
  const dumpRoot = path.join(os.tmpdir(), `bench-instructions-${runId}`);
  log(
    `bench:instructions: modes ${modes.map((m) => m.key).join(',')}; Node ${SETTINGS.nodes.join(' and ')}; ` +
      `${SETTINGS.warmup} requests of warm-up, ${SETTINGS.windows} windows of ${SETTINGS.requests}, ` +
      `${SETTINGS.connections} in flight; callgrind dumps in ${dumpRoot}`,
  );
  // NOTE: inside bench/, so that the compiled server resolves the packages the bench has.
  const compiledServer = compileServer(
    path.join(__dirname, '.server-js', runId),
  );
  const sets: { node: string; modes: Counted[] }[] = [];
  try {
    for (const major of SETTINGS.nodes) {
      const nodePath = nodeBinary(major);
      const node = execFileSync(nodePath, ['-p', 'process.version'])
        .toString()
        .trim();
      const dumpDir = path.join(dumpRoot, node);
      mkdirSync(dumpDir, { recursive: true });
      log(`${node}:`);
      sets.push({
        node,
        modes: await countSet(
          `${runId}_${major}`,
          nodePath,
          modes,
          dumpDir,
          compiledServer,
        ),
      });
    }
  } finally {
    rmSync(path.dirname(compiledServer), { recursive: true, force: true });
  }

  const command = [
    ...Object.entries(process.env)
      .filter(([k]) => /^(BENCH_|INSTR_)/.test(k))
      .map(([k, v]) => `${k}=${v}`),
    'npm run bench:instructions',
  ].join(' ');
  const header = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    command,
    settings: SETTINGS,
    valgrind: execFileSync('valgrind', ['--version']).toString().trim(),
    machine: `${os.cpus().length} CPUs (${os.cpus()[0]?.model.trim()}), ${os.type()} ${os.release()} ${os.arch()}`,
  };
  const dir = path.resolve(
    process.env.BENCH_RESULTS_DIR ?? path.join(__dirname, 'results'),
  );
  const base = `instructions-${startedAt.toISOString().replace(/[:.]/g, '-')}`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    path.join(dir, `${base}.json`),
    JSON.stringify({ ...header, sets }, null, 2),
  );
  const problems = sets.flatMap((s) =>
    s.modes.flatMap((m) =>
      m.check.problems.map((p) => `${s.node} ${m.key}: ${p}`),
    ),
  );
  const text: string[] = [];
  const md = [
    `# Instructions per request, ${header.startedAt}`,
    '',
    `Command: \`${command}\``,
    '',
    `Machine: ${header.machine}; ${header.valgrind} (callgrind, every thread of the server; ` +
      `Node with --single-threaded). ${SETTINGS.warmup} requests of warm-up, then ` +
      `${SETTINGS.windows} windows of ${SETTINGS.requests} requests, ${SETTINGS.connections} in flight.`,
    '',
    'GC, compile and program split the same instructions by the V8 function that ran them ' +
      '(request-path/callgrind-split.ts). A major GC or a batch of JIT compilation falls into ' +
      'some windows and not others, so the totals vary from run to run by several percent; ' +
      '"program" leaves both out and is the figure that compares code changes.',
    '',
    `o2 marks enqueued outbox rows in batches (one UPDATE per markBatchDelayMs, 25 ms by default). ` +
      `Under valgrind a request takes about 20 times longer, so the servers here run with ` +
      `markBatchDelayMs ${SETTINGS.markDelayMs} (INSTR_MARK_DELAY_MS) to mark as many rows per ` +
      `UPDATE as at native speed; the check column shows how many it marked.`,
    '',
  ];
  for (const set of sets) {
    const rows = rowsOf(set.modes);
    text.push(
      '',
      `Node ${set.node}: thousands of instructions per request (all windows)`,
      textTable(rows),
    );
    md.push(`## Node ${set.node}`, '', markdownTable(rows), '');
  }
  const verdict = problems.length
    ? `CHECK FAILED: ${problems.join('; ')}`
    : 'check: in every mode every row has exactly one job in Redis and every job a row';
  text.push(
    '',
    verdict,
    `results in ${path.relative(process.cwd(), dir) || '.'}: ${base}.{json,md}`,
  );
  md.push(verdict, '');
  writeFileSync(path.join(dir, `${base}.md`), md.join('\n'));
  process.stdout.write(`${text.join('\n')}\n`);
  if (problems.length) process.exitCode = 1;
}

main().catch((error: unknown) => {
  log(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
