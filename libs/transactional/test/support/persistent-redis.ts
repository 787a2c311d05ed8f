/**
 * A redis-server of a spec's own on a free port, persistent (AOF with `appendfsync always`, so a
 * kill and restart on the same port loses nothing Redis answered), and the faults the
 * adversarial6 relay specs inflict on it (SIGSTOP, kill and restart, CLIENT PAUSE, DEBUG SLEEP,
 * memory full, dropped connections). The shared Redis is never touched.
 */
import { ChildProcess, execFile, spawn } from 'child_process';
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { killOnExit } from '../../../../test/faults/support/cleanup';
import { freePort } from '../../../../test/faults/support/ports';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface PersistentRedis {
  port: number;
  url: string;
  cli(...args: string[]): Promise<string>;
  stop(): void;
  cont(): void;
  kill(): Promise<void>;
  start(): Promise<void>;
  dispose(): Promise<void>;
}

export async function startPersistentRedis(): Promise<PersistentRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'adv6-redis-'));
  let child: ChildProcess | undefined;
  const alive = () =>
    !!child && child.exitCode === null && child.signalCode === null;
  const unregister = killOnExit(() => {
    if (alive()) {
      child!.kill('SIGCONT');
      child!.kill('SIGKILL');
    }
  });
  const cli = (...args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile(
        'redis-cli',
        ['-p', String(port), ...args],
        { timeout: 10_000, maxBuffer: 1 << 20 },
        (error, stdout) => (error ? reject(error) : resolve(stdout.trim())),
      ),
    );
  const start = async () => {
    if (alive()) throw new Error('still running');
    child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--enable-debug-command',
        'yes',
        '--maxmemory-policy',
        'noeviction',
      ],
      { stdio: 'ignore' },
    );
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (
        await cli('PING').then(
          (r) => r === 'PONG',
          () => false,
        )
      )
        return;
      if (Date.now() > deadline) throw new Error('redis-server did not start');
      await sleep(20);
    }
  };
  const kill = async () => {
    if (!alive()) return;
    const proc = child!;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGCONT');
    proc.kill('SIGKILL');
    await exited;
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    cli,
    stop: () => void (alive() && child!.kill('SIGSTOP')),
    cont: () => void (alive() && child!.kill('SIGCONT')),
    kill,
    start,
    async dispose() {
      await kill();
      unregister();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------- faults

export type FaultKind =
  | 'sigstop'
  | 'kill-restart'
  | 'client-pause-all'
  | 'client-pause-write'
  | 'debug-sleep'
  | 'oom'
  /** `CLIENT KILL TYPE normal` every few ms: connections drop with commands in flight. */
  | 'client-kill';

/** Runs one fault for `ms` against `redis`; resolves once Redis is healthy again. */
export async function fault(
  redis: PersistentRedis,
  kind: FaultKind,
  ms: number,
) {
  switch (kind) {
    case 'sigstop':
      redis.stop();
      await sleep(ms);
      redis.cont();
      return;
    case 'kill-restart':
      await redis.kill();
      await sleep(ms);
      await redis.start();
      return;
    case 'client-pause-all':
      await redis.cli('CLIENT', 'PAUSE', String(ms), 'ALL');
      await sleep(ms);
      return;
    case 'client-pause-write':
      await redis.cli('CLIENT', 'PAUSE', String(ms), 'WRITE');
      await sleep(ms);
      return;
    case 'debug-sleep':
      await redis.cli('DEBUG', 'SLEEP', (ms / 1000).toFixed(3));
      return;
    case 'client-kill': {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        await redis.cli('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
        await sleep(20 + Math.floor(Math.random() * 60));
      }
      return;
    }
    case 'oom': {
      const info = await redis.cli('INFO', 'memory');
      const used = Number(/used_memory:(\d+)/.exec(info)![1]);
      await redis.cli('CONFIG', 'SET', 'maxmemory', String(used + 64 * 1024));
      // Fill it: the SET fits under the limit, and leaves the server over it.
      await redis.cli('SETRANGE', 'adv6-filler', String(512 * 1024), 'x');
      await sleep(ms);
      await redis.cli('DEL', 'adv6-filler');
      await redis.cli('CONFIG', 'SET', 'maxmemory', '0');
      return;
    }
  }
}

// ---------------------------------------------------------------- the app
