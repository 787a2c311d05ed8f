import { ChildProcess, spawn } from 'child_process';
import Redis from 'ioredis';
import { Socket } from 'net';
import { killOnExit, sleep } from './cleanup';
import { freePort } from './ports';

/**
 * A `redis-server` owned by one fault spec, on a free loopback port, persistence off: the
 * spec may kill, pause or flush it. The shared Redis is never touched.
 */
export interface OwnRedis {
  readonly port: number;
  readonly url: string;
  /** The pid of the running server (for CPU accounting), if running. */
  readonly pid: number | undefined;
  /** Sends `signal` and resolves once the server has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same port (empty: nothing was persisted). */
  restart(): Promise<void>;
  /** SIGSTOP: the server keeps its sockets open but answers nothing. */
  pause(): void;
  /** SIGCONT after `pause()`. */
  resume(): void;
  /** FLUSHALL through a short-lived client. */
  flushAll(): Promise<void>;
  /** A new client (the caller quits it). */
  client(): Redis;
  /** Kills the server for good (SIGCONT first, in case it is paused). */
  stop(): Promise<void>;
}

/** Whether a Redis server answers PING on `port`. */
function pings(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')));
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
  });
}

function running(child: ChildProcess | undefined): child is ChildProcess {
  return !!child && child.exitCode === null && child.signalCode === null;
}

/** Starts a test-owned `redis-server`; resolves once it answers PING. */
export async function startOwnRedis(): Promise<OwnRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const unregister = killOnExit(() => {
    if (running(child)) {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
  });

  const start = async () => {
    if (running(child)) throw new Error(`redis on ${port} is still running`);
    const proc = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        '/tmp',
      ],
      { stdio: 'ignore' },
    );
    child = proc;
    const deadline = Date.now() + 10_000;
    while (!(await pings(port))) {
      if (proc.exitCode !== null || Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`redis-server did not start on port ${port}`);
      }
      await sleep(20);
    }
  };

  const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
    const proc = child;
    if (!running(proc)) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGCONT');
    proc.kill(signal);
    await exited;
  };

  await start();
  const url = `redis://127.0.0.1:${port}`;
  return {
    port,
    url,
    get pid() {
      return running(child) ? child.pid : undefined;
    },
    kill,
    restart: start,
    pause() {
      if (running(child)) child.kill('SIGSTOP');
    },
    resume() {
      if (running(child)) child.kill('SIGCONT');
    },
    async flushAll() {
      const redis = new Redis(url, { maxRetriesPerRequest: 1 });
      try {
        await redis.flushall();
      } finally {
        redis.disconnect();
      }
    },
    client: () => new Redis(url, { maxRetriesPerRequest: 1 }),
    async stop() {
      await kill('SIGKILL');
      unregister();
    },
  };
}
