import { Test } from '@nestjs/testing';
import { TransactionalModule, TransactionHost } from '../src';
import { createLibApp } from './support/lib-app';
import { Order } from './support/order.entity';

/**
 * The module's time limits (`acquireTimeoutMs`, `afterCommitTimeoutMs`, `shutdownTimeoutMs`):
 * a value that is not a positive number of ms is refused with a message naming the option, and
 * `shutdownTimeoutMs` bounds how long `app.close()` waits for a transaction that never ends.
 */
const NAMES = [
  'acquireTimeoutMs',
  'afterCommitTimeoutMs',
  'shutdownTimeoutMs',
] as const;
const BAD: unknown[] = [
  0,
  -1,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  2 ** 31,
  '500',
];

describe('the module time limits', () => {
  describe.each(NAMES)('%s', (name) => {
    it.each(BAD)('should refuse %p in forRoot, naming the option', (value) => {
      expect(() =>
        TransactionalModule.forRoot({ [name]: value as number }),
      ).toThrow(
        new RegExp(
          `option ${name} must be a positive number of ms \\(at most 2147483647\\), got ${String(value)}\\.`,
        ),
      );
    });

    it('should refuse a bad value built by forRootAsync when the app starts', async () => {
      // NOTE: no DataSource (no connection names): the options are checked before any is
      // needed, and a TypeORM module in a module that fails to compile retries its connection
      // in the background, which kept jest from exiting.
      const building = Test.createTestingModule({
        imports: [
          TransactionalModule.forRootAsync({
            connectionNames: [],
            useFactory: async () => ({ [name]: -5 }),
          }),
        ],
      }).compile();
      await expect(building).rejects.toThrow(
        `option ${name} must be a positive number of ms`,
      );
    });
  });

  it('should end app.close() about shutdownTimeoutMs after it started when a transaction never ends', async () => {
    const app = await createLibApp({
      queues: [],
      options: { shutdownTimeoutMs: 600 },
      listen: false,
    });
    const host = app.get(TransactionHost);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const hung = host.withTransaction(async () => {
      await host.getRepository(Order).insert({ label: 'shutdown-limit' });
      await gate;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    let closedAfter: number | undefined;
    const closed = app.close().then(() => (closedAfter = Date.now() - started));
    await new Promise((resolve) => setTimeout(resolve, 400));
    // NOTE: still waiting for the transaction at 400 ms; done within a few seconds of 600.
    const waitedAt400 = closedAfter === undefined;
    await Promise.race([closed, new Promise((r) => setTimeout(r, 5_000))]);
    release();
    await hung.catch(() => undefined);
    expect({ waitedAt400, closed: closedAfter !== undefined }).toEqual({
      waitedAt400: true,
      closed: true,
    });
    expect(closedAfter).toBeGreaterThanOrEqual(550);
  });
});
