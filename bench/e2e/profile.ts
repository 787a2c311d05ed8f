import { readdirSync, readFileSync } from 'fs';
import { join } from 'path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

/** Top self-time functions of the `.cpuprofile` files in `dir`, as % of samples. */
export function topSelf(dir: string, top = 15) {
  const self = new Map<string, number>();
  let total = 0;
  for (const file of readdirSync(dir).filter((f) =>
    f.endsWith('.cpuprofile'),
  )) {
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as {
      nodes: ProfileNode[];
      samples: number[];
      timeDeltas: number[];
    };
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    profile.samples.forEach((id, i) => {
      const n = byId.get(id)!;
      const url = n.callFrame.url.replace(
        /^.*\/(node_modules|src|libs)\//,
        '$1/',
      );
      const name = `${n.callFrame.functionName || '(anonymous)'} ${url}:${n.callFrame.lineNumber + 1}`;
      const dt = profile.timeDeltas[i] ?? 0;
      self.set(name, (self.get(name) ?? 0) + dt);
      total += dt;
    });
  }
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([fn, us]) => ({
      fn,
      pct: +((100 * us) / Math.max(1, total)).toFixed(1),
    }));
}
