import { median } from './load';
import type { ModeResult, SetResult } from './run-set';

/** A same-round ratio to the baseline: median of the per-round ratios, and their spread. */
export interface Ratio {
  median: number;
  min: number;
  max: number;
}

/** One mode of one set, summarised. */
export interface ModeSummary {
  key: string;
  label: string;
  medianRps: number;
  minRps: number;
  maxRps: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerRequest: number;
  /** Same-round req/s ratio to the baseline (b2). */
  rpsRatio?: Ratio;
  /** Same-round CPU-per-request ratio to the baseline (b2). */
  cpuRatio?: Ratio;
  /** Median CPU per request of the fixed-rate segments (`SetResult.fixedRateRps`). */
  fixedCpuUsPerRequest?: number;
  /** Same-round ratio to the baseline of the fixed-rate segments' CPU per request. */
  fixedCpuRatio?: Ratio;
  /** The lowest rate a fixed-rate segment of the mode achieved (under the offer: saturated). */
  fixedMinRps?: number;
  checkOk: boolean;
  check: ModeResult['check'];
}

/** The baseline every ratio is taken against. */
export const BASELINE = 'b2';

function ratio(values: number[]): Ratio | undefined {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return undefined;
  return {
    median: median(finite),
    min: Math.min(...finite),
    max: Math.max(...finite),
  };
}

/** Per-mode summary of a set, with ratios to b2 taken round by round. */
export function summarise(set: SetResult): ModeSummary[] {
  const base = set.modes.find((m) => m.key === BASELINE);
  return set.modes.map((mode) => {
    const rps = mode.rounds.map((r) => r.rps);
    const perRound = (pick: (r: ModeResult['rounds'][number]) => number) =>
      base
        ? ratio(mode.rounds.map((r, i) => pick(r) / pick(base.rounds[i])))
        : undefined;
    const fixed = mode.rounds.every((r) => r.fixed);
    return {
      key: mode.key,
      label: mode.label,
      medianRps: median(rps),
      minRps: Math.min(...rps),
      maxRps: Math.max(...rps),
      p50Ms: mode.latency['50'],
      p99Ms: mode.latency['99'],
      cpuUsPerRequest: median(mode.rounds.map((r) => r.cpuUsPerRequest)),
      rpsRatio: perRound((r) => r.rps),
      cpuRatio: perRound((r) => r.cpuUsPerRequest),
      ...(fixed && {
        fixedCpuUsPerRequest: median(
          mode.rounds.map((r) => r.fixed!.cpuUsPerRequest),
        ),
        fixedCpuRatio: perRound((r) => r.fixed?.cpuUsPerRequest ?? NaN),
        fixedMinRps: Math.min(...mode.rounds.map((r) => r.fixed!.rps)),
      }),
      checkOk: mode.check.problems.length === 0,
      check: mode.check,
    };
  });
}

function fmt(value: number | undefined, digits = 1): string {
  return value !== undefined && Number.isFinite(value)
    ? value.toFixed(digits)
    : '-';
}

function fmtRatio(r?: Ratio): string {
  return r ? `${fmt(r.median, 2)} (${fmt(r.min, 2)}..${fmt(r.max, 2)})` : '-';
}

/**
 * Rows of the results table of one set (header first); with `fixedRateRps`, two columns for the
 * fixed-rate segments (a `*` marks a mode that did not keep up with the rate in some round).
 */
export function tableRows(
  summary: ModeSummary[],
  fixedRateRps?: number,
): string[][] {
  const fixed = fixedRateRps !== undefined;
  return [
    [
      'mode',
      'req/s',
      `req/s x ${BASELINE} (rounds)`,
      'p50 ms',
      'p99 ms',
      'CPU us/req',
      `CPU x ${BASELINE} (rounds)`,
      ...(fixed
        ? [
            `CPU us/req at ${fixedRateRps}/s`,
            `x ${BASELINE} at ${fixedRateRps}/s (rounds)`,
          ]
        : []),
      'rows = jobs',
    ],
    ...summary.map((s) => [
      s.key,
      fmt(s.medianRps, 0),
      fmtRatio(s.rpsRatio),
      fmt(s.p50Ms, 2),
      fmt(s.p99Ms, 2),
      fmt(s.cpuUsPerRequest, 0),
      fmtRatio(s.cpuRatio),
      ...(fixed
        ? [
            fmt(s.fixedCpuUsPerRequest, 0) +
              ((s.fixedMinRps ?? 0) < 0.95 * fixedRateRps ? '*' : ''),
            fmtRatio(s.fixedCpuRatio),
          ]
        : []),
      s.checkOk
        ? s.check.jobs
          ? `ok ${s.check.rows} = ${s.check.jobs}`
          : `ok ${s.check.rows} rows, no jobs`
        : `FAILED: ${s.check.problems.slice(0, 2).join('; ')}`,
    ]),
  ];
}

/** A plain-text table with aligned columns. */
export function textTable(rows: string[][]): string {
  const widths = rows[0].map((_, i) =>
    Math.max(...rows.map((row) => row[i].length)),
  );
  return rows
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** A markdown table (numbers right-aligned). */
export function markdownTable(rows: string[][]): string {
  const [head, ...body] = rows;
  return [
    `| ${head.join(' | ')} |`,
    `| ${head.map((_, i) => (i === 0 || i === head.length - 1 ? '---' : '---:')).join(' | ')} |`,
    ...body.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n');
}

/** One target of issue 11 and whether this run met it. */
export interface Target {
  node: string;
  what: string;
  measured: string;
  met: boolean | undefined;
}

/** The request-path targets, judged on one set (Node 24 targets on Node 24, Node 20 ones on 20). */
export function targets(set: SetResult, summary: ModeSummary[]): Target[] {
  const major = Number(/^v(\d+)/.exec(set.node)?.[1]);
  const by = (key: string) => summary.find((s) => s.key === key);
  const out: Target[] = [];
  // Judged at the fixed rate when the set has one (the same load for both modes; a mode that
  // did not keep up with it is judged at saturation), else at saturation.
  const cpuWithin = (key: string, limit: number) => {
    const mode = by(key);
    const base = by(BASELINE);
    const atFixed =
      set.fixedRateRps !== undefined &&
      mode?.fixedCpuRatio !== undefined &&
      (mode.fixedMinRps ?? 0) >= 0.95 * set.fixedRateRps &&
      (base?.fixedMinRps ?? 0) >= 0.95 * set.fixedRateRps;
    const r = atFixed ? mode?.fixedCpuRatio : mode?.cpuRatio;
    const saturated = mode?.cpuRatio;
    out.push({
      node: set.node,
      what: `${key} CPU per request within ${Math.round((limit - 1) * 100)}% of ${BASELINE}`,
      measured: r
        ? `${fmt(r.median, 3)}x (rounds ${fmt(r.min, 2)}..${fmt(r.max, 2)}) ` +
          (atFixed
            ? `at ${set.fixedRateRps} req/s; at saturation ${fmt(saturated?.median, 3)}x`
            : 'at saturation')
        : 'not run',
      met: r ? r.median <= limit : undefined,
    });
  };
  if (major >= 24) {
    cpuWithin('o1', 1.03);
    cpuWithin('o2', 1.1);
    cpuWithin('o1i', 1.05);
  }
  if (major === 20) {
    const o1 = by('o1')?.rpsRatio;
    const peers = ['p1', 'p2']
      .map((k) => ({ k, r: by(k)?.rpsRatio }))
      .filter((p) => p.r);
    const best = peers.sort((a, b) => b.r!.median - a.r!.median)[0];
    out.push({
      node: set.node,
      what: 'o1 req/s at least that of the faster peer (same-round ratios to b2)',
      measured:
        o1 && best
          ? `o1 ${fmt(o1.median, 3)}x, ${best.k} ${fmt(best.r!.median, 3)}x`
          : 'not run',
      met: o1 && best ? o1.median >= best.r!.median : undefined,
    });
  }
  if (set.probe) {
    out.push({
      node: set.node,
      what: 'o1 commit-to-enqueued p99 under 5 ms at half its peak rate',
      measured:
        `p99 ${fmt(set.probe.p99Ms, 2)} ms at ${set.probe.offeredRps} req/s (p50 ${fmt(set.probe.p50Ms, 2)} ms)` +
        (set.baselineProbe
          ? `; b2 at the same rate: p99 ${fmt(set.baselineProbe.p99Ms, 2)} ms (p50 ${fmt(set.baselineProbe.p50Ms, 2)} ms)`
          : ''),
      met: set.probe.p99Ms < 5,
    });
  }
  return out;
}
