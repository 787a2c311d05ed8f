import { ChildProcess, spawn } from 'child_process';
import { resolve } from 'path';
import { killOnExit, waitFor } from './cleanup';
import { freePort } from './ports';

/** The repository root (where `src/main.ts` and `node_modules` live). */
export const ROOT = resolve(__dirname, '../../..');

/** The admin token fault apps are started with. */
export const FAULT_ADMIN_TOKEN = 'fault-admin-token';

/**
 * Short intervals so a fault spec runs in seconds: retries, stalled checks, the reconciler
 * and the outbox relay all act within about a second.
 */
export const FAST_ENV: Record<string, string> = {
  ADMIN_TOKEN: FAULT_ADMIN_TOKEN,
  // Test-only key: fault apps seal endpoint secrets with it.
  SECRETS_ENCRYPTION_KEYS: 'fault:ZmF1bHQtdGVzdC1rZXktbm90LWEtc2VjcmV0LTMyYnk=',
  WEBHOOK_ALLOW_SUBNETS: '127.0.0.0/8,::1/128',
  WEBHOOK_RETRY_SCHEDULE_MS: '0,200,500,1000,2000,5000',
  WEBHOOK_TIMEOUT_MS: '2000',
  RECONCILE_INTERVAL_MS: '1000',
  BULL_STALLED_INTERVAL_MS: '1000',
  OUTBOX_GRACE_MS: '1000',
  OUTBOX_POLL_INTERVAL_MS: '200',
  WORKER_CONCURRENCY: '10',
  // Counted on every request, never refusing a load spec's calls.
  RATE_LIMIT_MAX: '100000',
  // Never shedding a load spec's calls either (the machine is busy by design).
  API_SHED_LOOP_UTILIZATION: '0',
  NO_COLOR: '1',
};

/** How the service process is started: the build of the fault global setup, else ts-node. */
export function serviceCommand(): string[] {
  const build = process.env.FAULT_APP_BUILD;
  if (build) return [resolve(build, 'src/main.js')];
  return ['-r', 'ts-node/register/transpile-only', 'src/main.ts'];
}

/** How an incarnation ended: its exit code, or the signal that ended it. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One OS process of the service (API, worker or both); it can be killed and restarted. */
export class ServiceProcess {
  /** `http://127.0.0.1:<port>` (unset for a worker-only process). */
  readonly url: string;
  /** Every incarnation's output, in order. */
  private readonly outputs: string[] = [];
  private child?: ChildProcess;
  private exited?: Promise<ProcessExit>;
  private readonly unregister: () => void;
  /** Incarnations started so far. */
  starts = 0;

  private constructor(
    readonly name: string,
    readonly port: number,
    private env: Record<string, string>,
  ) {
    this.url = `http://127.0.0.1:${port}`;
    this.unregister = killOnExit(() => {
      if (this.running) this.child!.kill('SIGKILL');
    });
  }

  /** Starts the service with `env` (on top of `FAST_ENV`); resolves once it is ready. */
  static async start(
    name: string,
    env: Record<string, string>,
  ): Promise<ServiceProcess> {
    const port = env.PORT ? Number(env.PORT) : await freePort();
    const svc = new ServiceProcess(name, port, {
      ...FAST_ENV,
      ...env,
      PORT: String(port),
    });
    await svc.restart();
    return svc;
  }

  get role(): string {
    return this.env.PROCESS_ROLE ?? 'all';
  }

  get running(): boolean {
    return (
      !!this.child &&
      this.child.exitCode === null &&
      this.child.signalCode === null
    );
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Output of every incarnation so far. */
  output(): string {
    return this.outputs.join(`\n----- ${this.name} restarted -----\n`);
  }

  /** The last `chars` characters of the output, for failure messages. */
  tail(chars = 4000): string {
    const all = this.output();
    return all.length > chars ? `...${all.slice(-chars)}` : all;
  }

  /**
   * Over all incarnations: the sum of the numbers a log pattern captures (first group), or the
   * number of matches of a pattern without a group.
   */
  logSum(pattern: RegExp): number {
    const global = new RegExp(pattern.source, 'g');
    let total = 0;
    for (const match of this.output().matchAll(global))
      total += match.length > 1 ? Number(match[1]) : 1;
    return total;
  }

  /**
   * Starts a new incarnation (after a kill), optionally with changed env; resolves once it
   * answers HTTP (or, worker-only, once it says it started).
   */
  async restart(envChanges: Record<string, string | undefined> = {}) {
    if (this.running) throw new Error(`${this.name} is still running`);
    for (const [key, value] of Object.entries(envChanges)) {
      if (value === undefined) delete this.env[key];
      else this.env[key] = value;
    }
    const index = this.outputs.push('') - 1;
    // NOTE: flags NODE_OPTIONS refuses (e.g. --cpu-prof) go on the command line.
    const flags = this.env.SERVICE_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
    const child = spawn(process.execPath, [...flags, ...serviceCommand()], {
      cwd: ROOT,
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.starts++;
    const append = (chunk: Buffer) => (this.outputs[index] += chunk.toString());
    child.stdout!.on('data', append);
    child.stderr!.on('data', append);
    this.exited = new Promise((done) =>
      child.once('exit', (code, signal) => done({ code, signal })),
    );
    await waitFor(
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(
            `${this.name} exited during start-up (${child.exitCode ?? child.signalCode}):\n${this.tail()}`,
          );
        }
        if (this.role === 'worker')
          return this.outputs[index].includes('worker started');
        return (await this.probe()) === 401;
      },
      `${this.name} to be ready`,
      90_000,
      () => this.tail(),
      100,
    );
  }

  /** Status of `GET /v1/endpoints` without credentials (401 once the app serves), or 0. */
  private async probe(): Promise<number> {
    try {
      const res = await fetch(`${this.url}/v1/endpoints`, {
        signal: AbortSignal.timeout(1000),
      });
      await res.arrayBuffer();
      return res.status;
    } catch {
      return 0;
    }
  }

  /**
   * Sends `signal` and resolves, with how it ended, once the process has exited (SIGKILL after
   * `graceMs`); resolves with nothing if it was not running.
   */
  async kill(
    signal: NodeJS.Signals = 'SIGKILL',
    graceMs = 15_000,
  ): Promise<ProcessExit | undefined> {
    if (!this.running) return undefined;
    const exited = this.exited!;
    this.child!.kill(signal);
    if (signal !== 'SIGKILL') {
      const child = this.child!;
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    }
    return exited;
  }

  /** Resolves once the current incarnation has exited by itself (e.g. the fail point). */
  async waitForExit(timeoutMs: number): Promise<string> {
    const child = this.child!;
    await waitFor(
      () => !this.running,
      `${this.name} to exit`,
      timeoutMs,
      () => this.tail(),
    );
    await this.exited;
    return String(child.signalCode ?? child.exitCode);
  }

  /** Kills for good (afterAll). */
  async stop() {
    await this.kill('SIGKILL');
    this.unregister();
  }
}
