/** Settings and Node binaries of the request-path benchmarks' orchestrators. */
import { execFileSync } from 'child_process';
import path from 'path';

/** An integer setting from the environment, at least `min`; `fallback` when unset. */
export function intEnv(name: string, fallback: number, min = 1): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`${name} must be an integer >= ${min}, got "${raw}"`);
  }
  return value;
}

/** The Node binary of a major version: this one, or one from the npm registry (scripts/with-node.sh). */
export function nodeBinary(major: string): string {
  if (process.versions.node.split('.')[0] === major) return process.execPath;
  const script = path.resolve(__dirname, '..', '..', 'scripts', 'with-node.sh');
  return execFileSync(
    'bash',
    [script, major, 'node', '-p', 'process.execPath'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
    .toString()
    .trim();
}
