/**
 * Prints one JSON line per second while it runs: CPU (% of one core) by process group, the
 * machine's steal and idle (% of all cores, 2 cores = 200), and Postgres' buffers written and
 * checkpoints, with the wait events of its active backends. For finding what a run (the overload
 * spec, a bench) waits on, lined up by time with its own output:
 *
 *   npx ts-node bench/e2e/proc-sampler.ts > /tmp/samples.jsonl &
 *   OVERLOAD_ENDPOINTS=1 npm run test:overload
 *
 * Groups: `svc-<PROCESS_ROLE>` (service processes, from their environment), `injector`,
 * `jest`, `pg`, `redis`, else the command name. Reads /proc (Linux); DATABASE_URL as the tests.
 */
import { readdirSync, readFileSync } from 'fs';
import { Client } from 'pg';

/** The group a process is counted in. */
function groupOf(pid: string, comm: string): string {
  if (comm.startsWith('postgres')) return 'pg';
  if (comm.startsWith('redis')) return 'redis';
  if (comm !== 'node') return comm;
  const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  if (cmd.includes('injector')) return 'injector';
  if (cmd.includes('jest')) return 'jest';
  if (cmd.includes('proc-sampler')) return 'sampler';
  if (/src\/main\.(js|ts)/.test(cmd)) {
    const env = readFileSync(`/proc/${pid}/environ`, 'utf8');
    return `svc-${/PROCESS_ROLE=(\w+)/.exec(env)?.[1] ?? 'all'}`;
  }
  return 'node';
}

/** CPU ticks (user + system) and group of every process. */
function processes(): Map<string, { group: string; ticks: number }> {
  const out = new Map<string, { group: string; ticks: number }>();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      out.set(pid, {
        group: groupOf(pid, comm),
        ticks: Number(fields[11]) + Number(fields[12]),
      });
    } catch {
      // The process ended while it was read.
    }
  }
  return out;
}

/** The machine's CPU counters (all cores). */
function machine() {
  const fields = readFileSync('/proc/stat', 'utf8')
    .split('\n')[0]
    .split(/\s+/)
    .slice(1)
    .map(Number);
  return {
    total: fields.reduce((a, b) => a + b, 0),
    idle: fields[3] + fields[4],
    steal: fields[7],
  };
}

const BGWRITER = `SELECT checkpoints_timed + checkpoints_req AS checkpoints,
  buffers_checkpoint + buffers_clean + buffers_backend AS written FROM pg_stat_bgwriter`;
const WAITS = `SELECT coalesce(wait_event_type, 'CPU') || ':' || coalesce(wait_event, '') AS w,
  count(*)::int AS n FROM pg_stat_activity
  WHERE state = 'active' AND pid <> pg_backend_pid() GROUP BY 1`;

async function main() {
  const pg = new Client({
    connectionString:
      process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  });
  await pg.connect();
  const cores = readFileSync('/proc/stat', 'utf8').match(/^cpu\d+/gm)!.length;
  let before = processes();
  let cpuBefore = machine();
  let bgBefore = (await pg.query(BGWRITER)).rows[0];
  setInterval(() => {
    void (async () => {
      const now = processes();
      const cpu = machine();
      const byGroup: Record<string, number> = {};
      for (const [pid, p] of now) {
        const ticks = p.ticks - (before.get(pid)?.ticks ?? 0);
        if (ticks > 0) byGroup[p.group] = (byGroup[p.group] ?? 0) + ticks;
      }
      const span = cpu.total - cpuBefore.total;
      const bg = (await pg.query(BGWRITER)).rows[0];
      const waits = (await pg.query<{ w: string; n: number }>(WAITS)).rows;
      console.log(
        JSON.stringify({
          t: Date.now(),
          steal: Math.round(
            (100 * cores * (cpu.steal - cpuBefore.steal)) / span,
          ),
          idle: Math.round((100 * cores * (cpu.idle - cpuBefore.idle)) / span),
          checkpoints: bg.checkpoints - bgBefore.checkpoints,
          buffersWritten: bg.written - bgBefore.written,
          cpu: byGroup,
          waits: Object.fromEntries(waits.map((r) => [r.w, r.n])),
        }),
      );
      before = now;
      cpuBefore = cpu;
      bgBefore = bg;
    })();
  }, 1000);
}

void main();
