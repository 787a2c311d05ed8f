/** Connection settings and names shared by the orchestrator and the server processes. */

/** URL of a database on the shared Postgres (`DATABASE_URL` overrides host and credentials). */
export function databaseUrl(database = 'transactional_test'): string {
  const url = new URL(
    process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  );
  url.pathname = `/${database}`;
  return url.toString();
}

/** URL of the shared Redis. */
export function redisUrl(): string {
  return process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
}

/**
 * The applications the benchmark boots, each in a process of its own (see server.ts):
 * - `plain`:        TypeORM + Bull only; never loads nestjs-cls or the library.
 * - `lib`:          plus `TransactionalModule.forRoot()` (defaults).
 * - `lib-cls`:      plus nestjs-cls registered by the app with its middleware mounted.
 * Diagnostic applications (variants not run by default):
 * - `plain-als`:    `plain` that has loaded nestjs-cls (which enables AsyncLocalStorage).
 * - `plain-clsmod`: `plain` plus `ClsModule.forRoot({ global: true })`, which
 *                   `TransactionalModule.forRoot({ registerClsModule: true })` registers.
 * - `lib-noclsmod`: `TransactionalModule.forRoot({ registerClsModule: false })`: the default
 *                   since the library stopped registering ClsModule (same as `lib`).
 */
export const SERVER_MODES = [
  'plain',
  'lib',
  'lib-cls',
  'plain-als',
  'plain-clsmod',
  'lib-noclsmod',
] as const;

/** One of `SERVER_MODES`. */
export type ServerMode = (typeof SERVER_MODES)[number];

/** What an application serves: `/a` and `/c` (hand-written) and/or `/b` (the library). */
export function routesOf(mode: ServerMode) {
  return {
    handWritten: ['plain', 'lib', 'plain-als', 'plain-clsmod'].includes(mode),
    library: ['lib', 'lib-cls', 'lib-noclsmod'].includes(mode),
  };
}

/**
 * Bull queue of one application's hand-written route (`plain`) or library route (`aware`);
 * unique per run, so that nothing else shares it.
 */
export function queueName(
  runId: string,
  mode: ServerMode,
  kind: 'plain' | 'aware',
): string {
  return `bench-overhead-${runId}-${mode}-${kind}`;
}

/** Messages from a server process to the orchestrator. */
export type ServerMessage =
  | { type: 'ready'; port: number }
  | {
      type: 'stopped';
      /** Jobs waiting in each of the server's Bull queues, counted before obliterating it. */
      jobs: Record<string, number>;
      /** Library counters (lib modes only): hook failures and failed flushes must be 0. */
      libraryStats?: Record<string, unknown>;
    }
  | { type: 'error'; message: string }
  /** The server process's CPU time so far (`process.cpuUsage()`), in microseconds. */
  | { type: 'cpu'; user: number; system: number };

/** Messages from the orchestrator to a server process. */
export type OrchestratorMessage = { type: 'stop' } | { type: 'cpu' };
