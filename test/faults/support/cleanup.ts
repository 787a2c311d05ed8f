import { runInThisContext } from 'vm';

/** Synchronous last-resort kills, run when the jest process exits (even after a failure). */
const onExit = new Set<() => void>();
let installed = false;

/**
 * Registers `kill` to run when the test process exits; returns the function that
 * unregisters it. `afterAll` is the normal path; this only catches what it missed.
 *
 * NOTE: the `process` global of a jest test file is a copy Node never emits on;
 * `runInThisContext` reaches the real one.
 */
export function killOnExit(kill: () => void): () => void {
  if (!installed) {
    installed = true;
    const realProcess = runInThisContext('process') as NodeJS.Process;
    const runAll = () => {
      for (const fn of onExit) {
        try {
          fn();
        } catch {
          // the process is gone already
        }
      }
    };
    realProcess.once('exit', runAll);
    // NOTE: a signal ends the process without 'exit'; the listener is removed by `once`, so
    // raising the signal again ends it the default way.
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      realProcess.once(signal, () => {
        runAll();
        realProcess.kill(realProcess.pid, signal);
      });
    }
  }
  onExit.add(kill);
  return () => onExit.delete(kill);
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `fn` until it returns a truthy value; fails with `what` (and `detail()`) on timeout. */
export async function waitFor<T>(
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  what: string,
  timeoutMs: number,
  detail?: () => Promise<string> | string,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) {
      const more = detail ? `\n${await detail()}` : '';
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${more}`,
      );
    }
    await sleep(intervalMs);
  }
}
