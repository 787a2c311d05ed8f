/** SVG plots of a request-path run, written by the bench itself (no plotting dependency). */
import type { ModeSummary } from './summary';
import { PERCENTILES, SetResult } from './run-set';

const COLORS = [
  '#4e79a7',
  '#f28e2b',
  '#59a14f',
  '#e15759',
  '#76b7b2',
  '#edc948',
  '#b07aa1',
  '#ff9da7',
  '#9c755f',
  '#bab0ac',
  '#000000',
];

function esc(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;');
}

function niceMax(value: number): number {
  const step = 10 ** Math.floor(Math.log10(value || 1));
  return Math.ceil(value / step) * step;
}

/**
 * Grouped bars: one group per mode, one bar per Node version (the median over rounds), a
 * whisker for the rounds' min..max.
 */
export function barChart(
  title: string,
  unit: string,
  sets: { node: string; summary: ModeSummary[] }[],
  pick: (s: ModeSummary) => { value: number; min?: number; max?: number },
): string {
  const modes = sets[0].summary.map((s) => s.key);
  const width = 80 + modes.length * (sets.length * 22 + 18);
  const height = 340;
  const [left, top, bottom] = [60, 40, 290];
  const values = sets
    .flatMap((set) => set.summary.map((s) => pick(s).max ?? pick(s).value))
    .filter(Number.isFinite)
    .sort((a, b) => b - a);
  // NOTE: a mode far above the rest (hello) is clipped, so that the others stay readable.
  const typical = values[Math.floor(values.length / 2)];
  const max = niceMax(values.find((v) => v <= 3 * typical) ?? values[0]);
  const y = (v: number) => bottom - ((bottom - top) * Math.min(v, max)) / max;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
  );
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(
    `<text x="${width / 2}" y="18" text-anchor="middle" font-size="13">${esc(title)}</text>`,
  );
  for (let i = 0; i <= 5; i++) {
    const v = (max * i) / 5;
    out.push(
      `<line x1="${left}" x2="${width - 10}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`,
    );
    out.push(
      `<text x="${left - 4}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(0)}</text>`,
    );
  }
  out.push(
    `<text x="14" y="${(top + bottom) / 2}" transform="rotate(-90 14 ${(top + bottom) / 2})" text-anchor="middle">${esc(unit)}</text>`,
  );
  modes.forEach((key, m) => {
    const x0 = left + 10 + m * (sets.length * 22 + 18);
    sets.forEach((set, s) => {
      const summary = set.summary.find((x) => x.key === key);
      if (!summary) return;
      const { value, min, max: hi } = pick(summary);
      if (!Number.isFinite(value)) return;
      const x = x0 + s * 22;
      out.push(
        `<rect x="${x}" y="${y(value)}" width="20" height="${bottom - y(value)}" fill="${COLORS[s]}"><title>${esc(`${key} ${set.node}: ${value.toFixed(1)} ${unit}`)}</title></rect>`,
      );
      if (value > max) {
        out.push(
          `<text x="${x + 10}" y="${top - 4}" text-anchor="middle" font-size="10">${value.toFixed(0)}</text>`,
        );
      }
      if (min !== undefined && hi !== undefined) {
        out.push(
          `<line x1="${x + 10}" x2="${x + 10}" y1="${y(min)}" y2="${y(hi)}" stroke="#333"/>`,
        );
        out.push(
          `<line x1="${x + 6}" x2="${x + 14}" y1="${y(min)}" y2="${y(min)}" stroke="#333"/>`,
        );
        out.push(
          `<line x1="${x + 6}" x2="${x + 14}" y1="${y(hi)}" y2="${y(hi)}" stroke="#333"/>`,
        );
      }
    });
    out.push(
      `<text x="${x0 + (sets.length * 22) / 2}" y="${bottom + 16}" text-anchor="middle">${esc(key)}</text>`,
    );
  });
  sets.forEach((set, s) => {
    out.push(
      `<rect x="${left + s * 120}" y="${height - 26}" width="12" height="12" fill="${COLORS[s]}"/>`,
    );
    out.push(
      `<text x="${left + s * 120 + 16}" y="${height - 16}">Node ${esc(set.node)}</text>`,
    );
  });
  out.push(
    `<text x="${width - 10}" y="${height - 16}" text-anchor="end" fill="#555">bar: median of rounds; whisker: min..max</text>`,
  );
  out.push('</svg>');
  return out.join('\n');
}

/**
 * Latency distribution of every mode of one set: latency (ms, log scale) against percentile on
 * a "nines" axis (50, 90, 99, 99.9, max).
 */
export function latencyChart(set: SetResult): string {
  const width = 720;
  const height = 400;
  const [left, right, top, bottom] = [60, 560, 40, 350];
  const points = PERCENTILES.filter((p) => p >= 10);
  const nines = (p: number) => (p >= 100 ? 3.3 : -Math.log10(1 - p / 100));
  const xMax = nines(100);
  const x = (p: number) => left + ((right - left) * nines(p)) / xMax;
  const all = set.modes
    .flatMap((m) => points.map((p) => m.latency[String(p)]))
    .filter((v) => v > 0);
  const lo = Math.log10(Math.max(0.1, Math.min(...all)));
  const hi = Math.log10(Math.max(...all));
  const yMin = Math.floor(lo);
  const yMax = Math.ceil(hi);
  const y = (ms: number) =>
    bottom -
    ((bottom - top) * (Math.log10(Math.max(ms, 10 ** yMin)) - yMin)) /
      (yMax - yMin || 1);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
  );
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(
    `<text x="${width / 2}" y="18" text-anchor="middle" font-size="13">${esc(`Response latency by percentile, Node ${set.node} (all rounds)`)}</text>`,
  );
  for (let e = yMin; e <= yMax; e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v > 10 ** yMax) break;
      out.push(
        `<line x1="${left}" x2="${right}" y1="${y(v)}" y2="${y(v)}" stroke="${m === 1 ? '#ccc' : '#eee'}"/>`,
      );
      out.push(
        `<text x="${left - 4}" y="${y(v) + 4}" text-anchor="end">${v}</text>`,
      );
    }
  }
  for (const [p, label] of [
    [50, '50'],
    [90, '90'],
    [99, '99'],
    [99.9, '99.9'],
    [100, 'max'],
  ] as const) {
    out.push(
      `<line x1="${x(p)}" x2="${x(p)}" y1="${top}" y2="${bottom}" stroke="#eee"/>`,
    );
    out.push(
      `<text x="${x(p)}" y="${bottom + 14}" text-anchor="middle">${label}</text>`,
    );
  }
  out.push(
    `<text x="${(left + right) / 2}" y="${bottom + 30}" text-anchor="middle">percentile</text>`,
  );
  out.push(
    `<text x="14" y="${(top + bottom) / 2}" transform="rotate(-90 14 ${(top + bottom) / 2})" text-anchor="middle">ms (log)</text>`,
  );
  set.modes.forEach((mode, i) => {
    const d = points
      .map(
        (p, j) =>
          `${j ? 'L' : 'M'}${x(p).toFixed(1)},${y(mode.latency[String(p)]).toFixed(1)}`,
      )
      .join(' ');
    out.push(
      `<path d="${d}" fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.5"><title>${esc(mode.key)}</title></path>`,
    );
    out.push(
      `<line x1="${right + 15}" x2="${right + 35}" y1="${top + 10 + i * 16}" y2="${top + 10 + i * 16}" stroke="${COLORS[i % COLORS.length]}" stroke-width="2"/>`,
    );
    out.push(
      `<text x="${right + 40}" y="${top + 14 + i * 16}">${esc(mode.key)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}
