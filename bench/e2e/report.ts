import { writeFileSync } from 'fs';
import { join } from 'path';
import { lineChart, Series } from './svg';

interface Step {
  offered: number;
  /** Deliveries/s the API accepted (201) in the step. */
  accepted: number;
  /** Requests not accepted: refused (503 under load shedding, 429) or failed. */
  errors: number;
  delivered: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  cpuMsPerDelivery: { total: number };
}
interface Backlog {
  api: {
    perSec: number;
    cpuMsPerRequest: {
      service: number;
      postgres: number;
      redis: number;
      total: number;
    };
  };
  drain: {
    perSec: number;
    arrived: number;
    deliveries: number;
    duplicates: number;
    verifyFailures: number;
    cpuMsPerDelivery: {
      service: number;
      postgres: number;
      redis: number;
      total: number;
    };
  };
  steps: Step[];
}

const ms = (v: number | null) => (v === null ? '∞' : String(v));

/** Writes `e2e-summary.md` and the SVG plots next to the JSON results. */
export function report(out: any, dir: string) {
  const lines: string[] = [
    `# bench:e2e results (${out.startedAt})`,
    '',
    `Machine: ${out.machine.cpus} cores (${out.machine.model}), load ${out.machine.load}; Node ${out.node}; ${out.postgres}; ${out.redis}.`,
    `Builds: ${out.builds.map((b: any) => `${b.name} = ${b.commit}`).join(', ')}. Command: \`${out.command}\`.`,
    `Settings: backlog ${out.settings.BACKLOG} deliveries, steps of ${out.settings.STEP_MS} ms, defaults WORKER_CONCURRENCY=20, PER_ENDPOINT_CONCURRENCY=4.`,
    '',
    '## Backlog drain and API',
    '',
    '| build | scenario | drain deliveries/s | CPU ms/delivery (service + pg + redis) | delivered / dup / bad sig | API delays/s | API CPU ms/request |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  const throughput: Series[] = [];
  const latency: Series[] = [];
  for (const [build, scenarios] of Object.entries<any>(out.results)) {
    for (const [name, r] of Object.entries<any>(scenarios)) {
      if (!r?.drain) continue;
      const b = r as Backlog;
      const c = b.drain.cpuMsPerDelivery;
      const a = b.api.cpuMsPerRequest;
      lines.push(
        `| ${build} | ${name} | ${b.drain.perSec} | ${c.total} (${c.service} + ${c.postgres} + ${c.redis}) | ${b.drain.arrived}/${b.drain.deliveries} / ${b.drain.duplicates} / ${b.drain.verifyFailures} | ${b.api.perSec} | ${a.total} (${a.service} + ${a.postgres} + ${a.redis}) |`,
      );
      if (b.steps.length) {
        throughput.push({
          name: `${build} ${name}`,
          points: b.steps.map((s) => [s.offered, s.delivered]),
        });
        latency.push({
          name: `${build} ${name}`,
          points: b.steps.map((s) => [s.offered, s.p99 ?? 100_000]),
        });
      }
    }
  }
  lines.push(
    '',
    '## Stepped offered rates (deliveries/s; latency = API answer → receiver, ms)',
    '',
  );
  lines.push(
    '| build | scenario | offered | accepted/s | requests not accepted | delivered/s | p50 | p95 | p99 | CPU ms/delivery |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  );
  for (const [build, scenarios] of Object.entries<any>(out.results)) {
    for (const [name, r] of Object.entries<any>(scenarios)) {
      for (const s of (r?.steps ?? []) as Step[]) {
        lines.push(
          `| ${build} | ${name} | ${s.offered} | ${s.accepted} | ${s.errors} | ${s.delivered} | ${ms(s.p50)} | ${ms(s.p95)} | ${ms(s.p99)} | ${s.cpuMsPerDelivery.total} |`,
        );
      }
    }
  }
  lines.push(
    '',
    '## Fairness (10 endpoints, endpoint 0 flooded at 20x the others)',
    '',
  );
  lines.push(
    '| build | phase | others p50 / p99 | flooded p50 / p99 |',
    '| --- | --- | --- | --- |',
  );
  for (const [build, scenarios] of Object.entries<any>(out.results)) {
    const f = scenarios.fairness;
    if (!f) continue;
    lines.push(
      `| ${build} | calm (${f.calm.others.offeredPerEndpoint}/s each) | ${ms(f.calm.others.p50)} / ${ms(f.calm.others.p99)} | |`,
    );
    lines.push(
      `| ${build} | flooded (${f.flooded.flooded.offered}/s) | ${ms(f.flooded.others.p50)} / ${ms(f.flooded.others.p99)} | ${ms(f.flooded.flooded.p50)} / ${ms(f.flooded.flooded.p99)} |`,
    );
  }
  lines.push(
    '',
    '## Top self time (worker profile, two processes, 10-endpoint backlog)',
    '',
  );
  for (const [build, scenarios] of Object.entries<any>(out.results)) {
    const p = scenarios.profile;
    if (!p) continue;
    lines.push(`### ${build}`, '', '| % | function |', '| --- | --- |');
    for (const t of p.top) lines.push(`| ${t.pct} | \`${t.fn}\` |`);
    lines.push('');
  }
  lines.push(
    '',
    '![deliveries/s vs offered](e2e-throughput.svg)',
    '',
    '![p99 vs offered](e2e-latency.svg)',
    '',
  );
  writeFileSync(join(dir, 'e2e-summary.md'), lines.join('\n'));
  writeFileSync(
    join(dir, 'e2e-throughput.svg'),
    lineChart(
      'verified deliveries/s vs offered',
      'offered deliveries/s',
      'delivered/s',
      throughput,
    ),
  );
  writeFileSync(
    join(dir, 'e2e-latency.svg'),
    lineChart(
      'p99 API answer → receiver',
      'offered deliveries/s',
      'p99 ms (log)',
      latency,
      { logY: true },
    ),
  );
}
