/**
 * Splits a V8 CPU profile (`--cpu-prof`) into windows of wall time and prints, per window, the
 * share of samples the main thread was busy, in the garbage collector, and the functions with the
 * most self time: `node scripts/cpuprofile-windows.js <file.cpuprofile> [seconds per window]`.
 * For a run whose rate changes over time (the overload spec with OVERLOAD_WORKER_FLAGS).
 */
const { readFileSync } = require('fs');

const [file, seconds = '10'] = process.argv.slice(2);
if (!file) {
  console.error('usage: node scripts/cpuprofile-windows.js <file> [seconds]');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8'));
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const windowUs = Number(seconds) * 1e6;
const windows = [];
let t = profile.startTime;
profile.samples.forEach((id, i) => {
  t += profile.timeDeltas[i];
  const w = Math.floor((t - profile.startTime) / windowUs);
  const frame = nodes.get(id).callFrame;
  const where = (frame.url || '').split('/').slice(-2).join('/');
  const key = `${frame.functionName || '(anonymous)'} ${where}:${frame.lineNumber}`;
  windows[w] ??= { samples: 0, self: new Map() };
  windows[w].samples++;
  windows[w].self.set(key, (windows[w].self.get(key) ?? 0) + 1);
});
windows.forEach((w, i) => {
  if (!w) return;
  const share = (n) => ((100 * n) / w.samples).toFixed(1);
  const idle = w.self.get('(idle) :-1') ?? 0;
  const gc = w.self.get('(garbage collector) :-1') ?? 0;
  const top = [...w.self]
    .filter(([key]) => !key.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, 6)
    .map(([key, n]) => `${key} ${share(n)}%`)
    .join(' | ');
  console.log(
    `${i * Number(seconds)} s: busy ${share(w.samples - idle)}%, gc ${share(gc)}%: ${top}`,
  );
});
