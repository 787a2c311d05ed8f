import { readdirSync, readFileSync } from 'fs';
import { join } from 'path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

/** Calls `visit` with the call frame and duration (µs) of every sample of the `.cpuprofile` files in `dir`. */
function forEachSample(
  dir: string,
  visit: (frame: CallFrame, us: number) => void,
) {
  for (const file of readdirSync(dir).filter((f) =>
    f.endsWith('.cpuprofile'),
  )) {
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as {
      nodes: ProfileNode[];
      samples: number[];
      timeDeltas: number[];
    };
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    profile.samples.forEach((id, i) =>
      visit(byId.get(id)!.callFrame, profile.timeDeltas[i] ?? 0),
    );
  }
}

/** The `top` largest entries of `self`, as % of `total`. */
function largest(self: Map<string, number>, total: number, top: number) {
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, us]) => ({
      name,
      pct: +((100 * us) / Math.max(1, total)).toFixed(1),
    }));
}

/** Top self-time functions of the `.cpuprofile` files in `dir`, as % of samples. */
export function topSelf(dir: string, top = 15) {
  const self = new Map<string, number>();
  let total = 0;
  forEachSample(dir, (frame, us) => {
    const url = frame.url.replace(/^.*\/(node_modules|src|libs)\//, '$1/');
    const name = `${frame.functionName || '(anonymous)'} ${url}:${frame.lineNumber + 1}`;
    self.set(name, (self.get(name) ?? 0) + us);
    total += us;
  });
  return largest(self, total, top).map(({ name, pct }) => ({ fn: name, pct }));
}

/**
 * Self time of the `.cpuprofile` files in `dir` by package (`node_modules/<package>`), source
 * file (`src/…`, `libs/…`), or native function, as % of samples.
 */
export function selfByPackage(dir: string, top = 30) {
  const self = new Map<string, number>();
  let total = 0;
  forEachSample(dir, ({ url, functionName }, us) => {
    // NOTE: the service the bench compiled lives in node_modules/.cache/bench-e2e/<build>/.
    const where =
      /\.cache\/bench-e2e\/[^/]+\/((?:src|libs)\/.*)$/.exec(url)?.[1] ??
      /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ??
      /\/((?:src|libs)\/.*)$/.exec(url)?.[1] ??
      (url ? url.replace(/^.*\//, '') : `(${functionName || 'native'})`);
    self.set(where, (self.get(where) ?? 0) + us);
    total += us;
  });
  return largest(self, total, top).map(({ name, pct }) => ({
    where: name,
    pct,
  }));
}
