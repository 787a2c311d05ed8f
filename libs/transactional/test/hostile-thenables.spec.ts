/**
 * After-commit hooks that return hostile thenables (a `then` that throws, calls back twice, or
 * calls back and then throws), in both of the runner's paths: a hook alone (`runSingle`) and a
 * hook among others (`runSequence`). The committed caller resolves, the failure is counted once
 * at most, and the runner's count of work in progress returns to zero (`drain` resolves with 0
 * at once): a miscount would make every shutdown wait for its whole limit.
 */
import type { INestApplication } from '@nestjs/common';
import { TransactionHost, TransactionRunner } from '../src';
import { closeLibApp, createLibApp } from './support/lib-app';

jest.setTimeout(30_000);

let app: INestApplication;
let host: TransactionHost;
let runner: TransactionRunner;

beforeAll(async () => {
  app = await createLibApp({
    queues: [{ name: 'hostile-thenables' }],
    listen: false,
  });
  host = app.get(TransactionHost);
  runner = app.get(TransactionRunner);
});

afterAll(async () => {
  await closeLibApp(app, ['hostile-thenables']);
});

/** A hook's return value: thenable in shape only (its `then` breaks the Promises/A+ rules). */
type Hostile = () => { then(...args: never[]): unknown };

const HOSTILE: [string, Hostile, number][] = [
  [
    'then() throws',
    () => ({
      then() {
        throw new Error('then() throws');
      },
    }),
    1,
  ],
  [
    'then() fulfils twice',
    () => ({
      then(onFulfilled?: ((value: unknown) => unknown) | null) {
        onFulfilled?.(1);
        onFulfilled?.(2);
        return this;
      },
    }),
    0,
  ],
  [
    'then() fulfils, then throws',
    () => ({
      then(onFulfilled?: ((value: unknown) => unknown) | null) {
        onFulfilled?.(1);
        throw new Error('after fulfilling');
      },
    }),
    0,
  ],
  [
    'then() rejects twice',
    () => ({
      then(_f?: unknown, onRejected?: ((error: unknown) => unknown) | null) {
        onRejected?.(new Error('one'));
        onRejected?.(new Error('two'));
        return this;
      },
    }),
    1,
  ],
];

describe.each([
  ['alone', 1],
  ['among other hooks', 3],
])('an after-commit hook %s', (_where, hooks) => {
  it.each(HOSTILE)(
    'returning a thenable whose %s: the commit resolves, failures counted once, nothing left in progress',
    async (_name, hostile, failures) => {
      const before = runner.stats.hookFailures;
      const result = host.withTransaction(async () => {
        for (let i = 1; i < hooks; i++) await host.afterCommit(() => undefined);
        await host.afterCommit(hostile);
        return 'committed';
      });
      await expect(result).resolves.toBe('committed');
      expect(runner.stats.hookFailures - before).toBe(failures);
      expect(await runner.drain(1_000)).toBe(0);
    },
  );
});
