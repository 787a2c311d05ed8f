import { ChildProcess, spawn } from 'child_process';
import { resolve } from 'path';
import {
  E2E_BULL_PREFIX,
  E2E_ENCRYPTION_KEYS,
  e2eDatabaseUrl,
  e2eRedisUrl,
  eventually,
} from './harness';

/** A worker running as its own OS process, as in production. */
export interface WorkerProcess {
  child: ChildProcess;
  output: () => string;
  exited: Promise<unknown>;
}

const workers: WorkerProcess[] = [];
// NOTE: a crashed jest run must not leave workers behind.
process.once('exit', () => workers.forEach((w) => w.child.kill('SIGKILL')));

/**
 * Starts `src/main.ts` as a worker-only process on the e2e database, Redis and Bull prefix, with
 * a short retry schedule (0, 200, 400, 600 ms), a 1 s reconciler and stalled-job check, and
 * `env` on top; resolves once it processes jobs.
 */
export async function startWorkerProcess(
  env: Record<string, string>,
): Promise<WorkerProcess> {
  const child = spawn(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', 'src/main.ts'],
    {
      cwd: resolve(__dirname, '../..'),
      env: {
        ...process.env,
        PROCESS_ROLE: 'worker',
        DATABASE_URL: e2eDatabaseUrl(),
        REDIS_URL: e2eRedisUrl(),
        BULL_PREFIX: E2E_BULL_PREFIX,
        SECRETS_ENCRYPTION_KEYS: E2E_ENCRYPTION_KEYS,
        WEBHOOK_ALLOW_SUBNETS: '127.0.0.0/8,::1/128',
        WEBHOOK_RETRY_SCHEDULE_MS: '0,200,400,600',
        RECONCILE_INTERVAL_MS: '1000',
        BULL_STALLED_INTERVAL_MS: '1000',
        NO_COLOR: '1',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise((done) => child.once('exit', done));
  const worker = { child, output: () => output, exited };
  workers.push(worker);
  await eventually(
    () => {
      if (child.exitCode !== null)
        throw new Error(`worker exited early:\n${output}`);
      return output.includes('worker started');
    },
    'the worker process to start',
    30_000,
  );
  return worker;
}

/** SIGKILLs a worker that is still running and waits for it to be gone. */
export async function killWorker(worker: WorkerProcess): Promise<void> {
  if (worker.child.exitCode === null && worker.child.signalCode === null) {
    worker.child.kill('SIGKILL');
  }
  await worker.exited;
}

/** Every worker process started so far, to kill in `afterAll`. */
export function workerProcesses(): readonly WorkerProcess[] {
  return workers;
}
