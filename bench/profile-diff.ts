/**
 * Compares two V8 CPU profiles of benchmark servers (written with BENCH_CPU_PROF, see
 * README.md): self time per package, or per function with `--by-function`, in microseconds per
 * request, counted from the first sample inside a benchmarked route handler (start-up
 * excluded), idle excluded.
 *
 *   npx ts-node bench/profile-diff.ts <base.cpuprofile> <other.cpuprofile> <requests> [<other requests>] [--by-function]
 *
 * `requests` is the number of requests each server handled (warm-up + rounds), or the base's
 * when the other's is given too (the "rows = jobs" count of each mode).
 */
import { readFileSync } from 'fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Functions of the benchmarked route handlers (bench/request-path/*.app.ts). */
const HANDLERS = new Set([
  'benchHandler',
  'benchWrite',
  'benchCreate',
  'handleWithStopwatch',
]);
/** Native socket writes: same count in every variant, but their cost swings with load. */
const SYSCALLS = ['native:writeBuffer', 'native:writev'];

function bucket(frame: CallFrame, byFunction: boolean): string {
  const url = frame.url;
  let name: string;
  if (!url) {
    name = frame.functionName.startsWith('(')
      ? frame.functionName
      : `native:${frame.functionName}`;
    return name;
  }
  const pkg = /node_modules\/((@[^/]+\/)?[^/]+)/.exec(url);
  if (url.includes('libs/transactional')) name = 'libs/transactional';
  else if (pkg) name = pkg[1];
  else name = url.replace(/^file:\/\/.*\/(bench|libs|src)\//, '$1/');
  return byFunction
    ? `${name} ${frame.functionName || '(anonymous)'}:${frame.lineNumber + 1}`
    : name;
}

function selfTimes(file: string, requests: number, byFunction: boolean) {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parents = new Map<number, number>();
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) parents.set(child, node.id);
  }
  const inHandler = (id: number | undefined): boolean => {
    for (; id !== undefined; id = parents.get(id)) {
      if (HANDLERS.has(nodes.get(id)!.callFrame.functionName)) return true;
    }
    return false;
  };
  const times = new Map<string, number>();
  let started = false;
  profile.samples.forEach((id, i) => {
    started ||= inHandler(id);
    const frame = nodes.get(id)!.callFrame;
    if (!started || frame.functionName === '(idle)') return;
    const key = bucket(frame, byFunction);
    times.set(key, (times.get(key) ?? 0) + profile.timeDeltas[i] / requests);
  });
  return times;
}

function total(times: Map<string, number>, skip: string[] = []): number {
  let sum = 0;
  for (const [key, value] of times) if (!skip.includes(key)) sum += value;
  return sum;
}

function main() {
  const args = process.argv.slice(2);
  const byFunction = args.includes('--by-function');
  const [baseFile, otherFile, requestsArg, otherRequestsArg] = args.filter(
    (arg) => !arg.startsWith('--'),
  );
  const requests = Number(requestsArg);
  const otherRequests = Number(otherRequestsArg ?? requestsArg);
  if (!baseFile || !otherFile || !(requests > 0)) {
    console.error(
      'usage: profile-diff.ts <base.cpuprofile> <other.cpuprofile> <requests> [<other requests>] [--by-function]',
    );
    process.exitCode = 2;
    return;
  }
  const base = selfTimes(baseFile, requests, byFunction);
  const other = selfTimes(otherFile, otherRequests, byFunction);
  console.log(
    `CPU us/request: base ${total(base).toFixed(0)}, other ${total(other).toFixed(0)}; ` +
      `without socket-write syscalls: base ${total(base, SYSCALLS).toFixed(0)}, ` +
      `other ${total(other, SYSCALLS).toFixed(0)} ` +
      `(delta ${(total(other, SYSCALLS) - total(base, SYSCALLS)).toFixed(0)})`,
  );
  const keys = new Set([...base.keys(), ...other.keys()]);
  const rows = [...keys]
    .map((key) => {
      const a = base.get(key) ?? 0;
      const b = other.get(key) ?? 0;
      return { key, a, b, delta: b - a };
    })
    .sort((x, y) => Math.abs(y.delta) - Math.abs(x.delta))
    .slice(0, 40);
  console.log(' delta    base   other  (us/request)');
  for (const row of rows) {
    console.log(
      `${row.delta.toFixed(1).padStart(6)}  ${row.a.toFixed(1).padStart(6)}  ` +
        `${row.b.toFixed(1).padStart(6)}  ${row.key}`,
    );
  }
}

main();
