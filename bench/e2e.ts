/**
 * `npm run bench:e2e`: end-to-end delivery throughput of the service (see bench/README.md).
 * Each scenario runs the compiled service on a fresh database and redis-server with a local
 * receiver that verifies every signature (`standardwebhooks`); builds (this tree, and
 * `BENCH_E2E_BASELINE` if set) are interleaved scenario by scenario.
 */
import { execFileSync } from 'child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import { cpus, tmpdir } from 'os';
import { join, resolve } from 'path';
import { Build, buildCurrent, buildRef } from './e2e/builds';
import { drive, Sent } from './e2e/client';
import { topSelf } from './e2e/profile';
import { VerifyingReceiver } from './e2e/receiver';
import { quantiles, Scenario } from './e2e/scenario';
import { report } from './e2e/report';

const env = (name: string, fallback: string) => process.env[name] ?? fallback;
const BACKLOG = Number(env('BENCH_E2E_BACKLOG', '5000'));
const STEP_MS = Number(env('BENCH_E2E_STEP_MS', '6000'));
const RATES = env('BENCH_E2E_RATES', '50,100,200,400,700,1000,1400,2000')
  .split(',')
  .map(Number);
const SCENARIOS = env('BENCH_E2E_SCENARIOS', 'one:1,one:10,two:1,two:10')
  .split(',')
  .map((s) => {
    const [mode, n] = s.split(':');
    return { mode: mode as 'one' | 'two', endpoints: Number(n) };
  });
const FAIRNESS = env('BENCH_E2E_FAIRNESS', '1') === '1';
const PROFILE = env('BENCH_E2E_PROFILE', '1') === '1';
const DRAIN_TIMEOUT_MS = Number(env('BENCH_E2E_DRAIN_TIMEOUT_MS', '240000'));

const log = (...args: unknown[]) =>
  console.log(new Date().toISOString().slice(11, 19), ...args);

/** Fills a backlog with the API alone, then starts the worker side and times the drain. */
async function backlogAndSteps(
  build: Build,
  receiver: VerifyingReceiver,
  mode: 'one' | 'two',
  endpoints: number,
  { steps = true, profileDir }: { steps?: boolean; profileDir?: string } = {},
) {
  receiver.reset();
  const s = await Scenario.create(receiver, build.dir);
  try {
    const api = await s.start('api', { PROCESS_ROLE: 'api' });
    await s.tenant(api.url, endpoints);
    // The API alone: delay requests per second while the backlog is written.
    const requests = Math.ceil(BACKLOG / endpoints);
    await s.cpu.begin();
    const fill = await drive({
      send: (i) => s.delay(i),
      total: requests,
      concurrency: 32,
    });
    const fillCpu = await s.cpu.end();
    const apiResult = {
      requests: fill.sent.length,
      errors: fill.errors,
      perSec: +((1000 * fill.sent.length) / fill.elapsedMs).toFixed(1),
      cpuMsPerRequest: perUnit(fillCpu, fill.sent.length),
    };
    log(`${build.name} ${mode}:${endpoints} api`, apiResult);
    const profiled: Record<string, string> = profileDir
      ? { SERVICE_NODE_FLAGS: `--cpu-prof --cpu-prof-dir=${profileDir}` }
      : {};
    if (mode === 'one') {
      await api.kill('SIGTERM', 20_000);
      s.services = s.services.filter((x) => x !== api);
      const all = await s.start('all', { PROCESS_ROLE: 'all', ...profiled });
      s.useApi(all.url);
    } else {
      await s.start('worker', { PROCESS_ROLE: 'worker', ...profiled });
    }
    // Timed from the first delivery (not the process start-up) to the last.
    const first = Date.now();
    while (receiver.verified === 0 && Date.now() - first < 60_000)
      await new Promise((r) => setTimeout(r, 10));
    const startCount = receiver.verified;
    const t0 = receiver.times[0] ?? Date.now();
    await s.cpu.begin();
    const arrived = await s.waitDelivered(fill.sent, DRAIN_TIMEOUT_MS);
    const drainCpu = await s.cpu.end();
    const t1 = receiver.times[receiver.times.length - 1];
    const drain = {
      deliveries: fill.sent.length * endpoints,
      arrived,
      perSec: +(
        (1000 * (receiver.verified - 1)) /
        Math.max(1, t1 - t0)
      ).toFixed(1),
      cpuMsPerDelivery: perUnit(drainCpu, receiver.verified - startCount),
      duplicates: receiver.duplicates,
      verifyFailures: receiver.failed,
    };
    log(`${build.name} ${mode}:${endpoints} drain`, drain);
    const stepResults = [];
    if (steps && arrived === drain.deliveries) {
      for (const rate of RATES) {
        const step = await runStep(s, rate, endpoints, (k) => s.delay(k));
        stepResults.push(step);
        log(`${build.name} ${mode}:${endpoints} step`, step);
        if (step.p99 === null || step.p99 > 1000) break;
      }
    }
    return { api: apiResult, drain, steps: stepResults };
  } finally {
    await s.close();
  }
}

function perUnit(
  cpu: { service: number; postgres: number; redis: number },
  n: number,
) {
  const d = Math.max(1, n);
  return {
    service: +(cpu.service / d).toFixed(3),
    postgres: +(cpu.postgres / d).toFixed(3),
    redis: +(cpu.redis / d).toFixed(3),
    total: +((cpu.service + cpu.postgres + cpu.redis) / d).toFixed(3),
  };
}

/** Offers `rate` deliveries/s for STEP_MS; delivered/s in that window and latencies. */
async function runStep(
  s: Scenario,
  rate: number,
  fanout: number,
  send: (i: number) => Promise<Sent | undefined>,
) {
  const before = s.receiver.times.length;
  const t0 = Date.now();
  await s.cpu.begin();
  const run = await drive({
    send,
    ratePerSec: rate / fanout,
    durationMs: STEP_MS,
  });
  const t1 = Date.now();
  const cpu = await s.cpu.end();
  const inWindow = s.receiver.times
    .slice(before)
    .filter((t) => t >= t0 && t <= t1).length;
  await s.waitDelivered(run.sent, 3000);
  const q = quantiles(s.latencies(run.sent));
  return {
    offered: rate,
    accepted: +((1000 * run.sent.length * fanout) / (t1 - t0)).toFixed(1),
    errors: run.errors,
    delivered: +((1000 * inWindow) / (t1 - t0)).toFixed(1),
    ...q,
    cpuMsPerDelivery: perUnit(cpu, inWindow),
  };
}

/** 10 endpoints at `base` deliveries/s each, then endpoint 0 flooded at 20x: the others' latency. */
async function fairness(
  build: Build,
  receiver: VerifyingReceiver,
  base: number,
) {
  receiver.reset();
  const s = await Scenario.create(receiver, build.dir);
  try {
    const api = await s.start('api', { PROCESS_ROLE: 'api' });
    await s.tenant(api.url, 10);
    await s.start('worker', { PROCESS_ROLE: 'worker' });
    const phase = async (flood: boolean) => {
      const perRound = flood ? 29 : 9; // endpoint 0 takes 20 of 29 events per round
      const pick = (i: number) => {
        const r = i % perRound;
        return flood ? (r < 20 ? 0 : r - 19) : r + 1;
      };
      const ratePerSec = base * perRound;
      const run = await drive({
        send: (i) => s.eventFor(pick(i)),
        ratePerSec,
        durationMs: STEP_MS,
      });
      await s.waitDelivered(run.sent, 5000);
      const others = run.sent.filter((x) => x.endpoints[0] !== s.endpoints[0]);
      const flooded = run.sent.filter((x) => x.endpoints[0] === s.endpoints[0]);
      return {
        others: { offeredPerEndpoint: base, ...quantiles(s.latencies(others)) },
        flooded: flood
          ? { offered: base * 20, ...quantiles(s.latencies(flooded)) }
          : null,
      };
    };
    const calm = await phase(false);
    const flooded = await phase(true);
    const result = { calm, flooded };
    log(`${build.name} fairness`, JSON.stringify(result));
    return result;
  } finally {
    await s.close();
  }
}

async function main() {
  const builds: Build[] = [];
  if (process.env.BENCH_E2E_BASELINE)
    builds.push(buildRef('before', process.env.BENCH_E2E_BASELINE));
  builds.push(buildCurrent());
  const receiver = await VerifyingReceiver.start();
  const results: Record<string, Record<string, unknown>> = {};
  for (const b of builds) results[b.name] = {};
  const started = new Date();
  // Written after every scenario, so that an interrupted run keeps what it measured.
  const save = () => {
    const version = (cmd: string, args: string[]) => {
      try {
        return execFileSync(cmd, args).toString().trim().split('\n')[0];
      } catch {
        return 'unknown';
      }
    };
    const out = {
      startedAt: started.toISOString(),
      finishedAt: new Date().toISOString(),
      command: 'npm run bench:e2e',
      settings: { BACKLOG, STEP_MS, RATES, SCENARIOS },
      machine: {
        cpus: cpus().length,
        model: cpus()[0]?.model,
        load: version('cat', ['/proc/loadavg']),
      },
      node: process.version,
      postgres: version('psql', ['--version']),
      redis: version('redis-server', ['--version']),
      builds: builds.map(({ name, commit }) => ({ name, commit })),
      results,
    };
    const dir = resolve(__dirname, 'results');
    mkdirSync(dir, { recursive: true });
    const stamp = started.toISOString().replace(/[:.]/g, '-');
    writeFileSync(join(dir, `e2e-${stamp}.json`), JSON.stringify(out, null, 2));
    report(out, dir);
    log(
      `results in bench/results/e2e-${stamp}.json, bench/results/e2e-summary.md`,
    );
  };
  try {
    let round = 0;
    const rotated = () => (round++ % 2 ? [...builds].reverse() : builds);
    for (const sc of SCENARIOS) {
      for (const b of rotated()) {
        log(`== ${b.name} (${b.commit}) ${sc.mode}:${sc.endpoints}`);
        results[b.name][`${sc.mode}:${sc.endpoints}`] = await backlogAndSteps(
          b,
          receiver,
          sc.mode,
          sc.endpoints,
        );
        save();
      }
    }
    if (FAIRNESS) {
      for (const b of rotated()) {
        results[b.name].fairness = await fairness(b, receiver, 10);
        save();
      }
    }
    if (PROFILE) {
      for (const b of rotated()) {
        const dir = mkdtempSync(join(tmpdir(), 'bench-e2e-prof-'));
        await backlogAndSteps(b, receiver, 'two', 10, {
          steps: false,
          profileDir: dir,
        });
        results[b.name].profile = {
          scenario: 'two:10 backlog drain, worker',
          top: topSelf(dir),
        };
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    await receiver.close();
  }
  save();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
