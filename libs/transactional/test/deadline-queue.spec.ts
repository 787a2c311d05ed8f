import { spawnSync } from 'child_process';
import { performance } from 'perf_hooks';
import { DeadlineQueue } from '../src/deadline-queue';

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `body` in a fresh Node process with `DeadlineQueue` in scope; its stdout and run time. */
function runInChild(body: string): { stdout: string; ms: number } {
  const started = performance.now();
  const child = spawnSync(
    process.execPath,
    [
      '-e',
      `const { DeadlineQueue } = require(${JSON.stringify(
        require.resolve('../dist/deadline-queue'),
      )});\n${body}`,
    ],
    { encoding: 'utf8', timeout: 20_000 },
  );
  if (child.status !== 0) throw new Error(`child failed: ${child.stderr}`);
  return { stdout: child.stdout, ms: performance.now() - started };
}

describe('DeadlineQueue (the one timer behind the connection waits and after-commit deadlines)', () => {
  it('should call each expired deadline once, no earlier than its length, in the order they were started', async () => {
    const queue = new DeadlineQueue(60);
    const fired: { name: string; after: number }[] = [];
    const start = (name: string) => {
      const at = performance.now();
      queue.start(() => fired.push({ name, after: performance.now() - at }));
    };
    start('a');
    await pause(20);
    start('b');
    await pause(20);
    start('c');
    await pause(150);
    expect(fired.map((f) => f.name)).toEqual(['a', 'b', 'c']);
    for (const { after } of fired) {
      // Node may run a timer up to a millisecond early by the performance clock.
      expect(after).toBeGreaterThanOrEqual(59);
      expect(after).toBeLessThan(140);
    }
  });

  it('should never call a cancelled deadline, and still serve one started after it at its own time', async () => {
    const queue = new DeadlineQueue(50);
    const fired: string[] = [];
    const first = queue.start(() => fired.push('first'));
    await pause(30);
    const startedAt = performance.now();
    let secondAfter = -1;
    queue.start(() => {
      fired.push('second');
      secondAfter = performance.now() - startedAt;
    });
    first.cancel();
    first.cancel();
    await pause(35);
    // The timer armed for the first deadline has fired by now: the second is not due yet.
    expect(fired).toEqual([]);
    await pause(80);
    expect(fired).toEqual(['second']);
    expect(secondAfter).toBeGreaterThanOrEqual(49);
  });

  it('should keep cancelling in the middle of the list from dropping the others', async () => {
    const queue = new DeadlineQueue(30);
    const fired: number[] = [];
    const deadlines = [0, 1, 2, 3, 4].map((i) =>
      queue.start(() => fired.push(i)),
    );
    deadlines[2].cancel();
    deadlines[0].cancel();
    deadlines[4].cancel();
    await pause(80);
    expect(fired).toEqual([1, 3]);
  });

  it('should keep the process alive while a deadline is pending, and not once none is', () => {
    const pending = runInChild(
      `new DeadlineQueue(300).start(() => console.log('expired'));`,
    );
    expect(pending.stdout.trim()).toBe('expired');
    const cancelled = runInChild(
      `const queue = new DeadlineQueue(5000);
       queue.start(() => console.log('expired')).cancel();
       setTimeout(() => queue.start(() => console.log('late')).cancel(), 10);`,
    );
    expect(cancelled.stdout).toBe('');
    // Well under the 5 s the armed timer waits for.
    expect(cancelled.ms).toBeLessThan(4000);
  });
});
