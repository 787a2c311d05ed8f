/** One line of a chart: its name and (x, y) points. */
export interface Series {
  name: string;
  points: [number, number][];
}

const COLORS = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#ff7f0e',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#17becf',
];

/** A small line chart as SVG text (no dependencies). `logY` plots y on a log10 scale. */
export function lineChart(
  title: string,
  xLabel: string,
  yLabel: string,
  series: Series[],
  { logY = false } = {},
): string {
  const W = 640;
  const H = 400;
  const L = 70;
  const R = 190;
  const T = 40;
  const B = 50;
  const pts = series.flatMap((s) => s.points);
  const ty = (y: number) => (logY ? Math.log10(Math.max(y, 1)) : y);
  const xMax = Math.max(1, ...pts.map((p) => p[0]));
  const yMax = Math.max(1, ...pts.map((p) => ty(p[1])));
  const yMin = logY ? 0 : 0;
  const sx = (x: number) => L + ((W - L - R) * x) / xMax;
  const sy = (y: number) =>
    H - B - ((H - T - B) * (ty(y) - yMin)) / (yMax - yMin);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - R / 2}" y="20" text-anchor="middle" font-size="14">${title}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">${xLabel}</text>`,
    `<text x="16" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(T + H - B) / 2})">${yLabel}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const x = (xMax * i) / 5;
    out.push(
      `<text x="${sx(x)}" y="${H - B + 15}" text-anchor="middle">${Math.round(x)}</text>`,
    );
    const yv = yMin + ((yMax - yMin) * i) / 5;
    const label = logY ? Math.round(10 ** yv) : Math.round(yv);
    const yy = H - B - ((H - T - B) * i) / 5;
    out.push(
      `<text x="${L - 5}" y="${yy + 4}" text-anchor="end">${label}</text>`,
      `<line x1="${L}" y1="${yy}" x2="${W - R}" y2="${yy}" stroke="#eee"/>`,
    );
  }
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const d = s.points
      .map(
        (p, j) =>
          `${j ? 'L' : 'M'}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`,
      )
      .join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const p of s.points)
      out.push(
        `<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="3" fill="${color}"/>`,
      );
    out.push(
      `<rect x="${W - R + 10}" y="${T + i * 18}" width="12" height="3" fill="${color}"/>`,
      `<text x="${W - R + 26}" y="${T + i * 18 + 5}">${s.name}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}
