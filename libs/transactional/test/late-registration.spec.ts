import { INestApplication, Injectable } from '@nestjs/common';
import {
  InjectTransactionAwareQueue,
  Propagation,
  Transactional,
  TransactionAwareQueue,
  TransactionClosedError,
  TransactionHost,
} from '../src';
import { uniqueName } from './support/env';
import { closeLibApp, createLibApp, waitFor } from './support/lib-app';

const QUEUE = uniqueName('late');

/** What the promise left running by a scope saw and got, once it ran after the scope ended. */
interface Late {
  isActive?: boolean;
  add?: unknown;
  afterCommit?: unknown;
  afterRollback?: unknown;
  manager?: unknown;
  nested?: unknown;
  done: boolean;
}

const settle = (work: () => Promise<unknown>) =>
  work().then(
    (value) => `resolved ${String(value)}`,
    (error: Error) => error,
  );
const settleSync = (work: () => unknown) => {
  try {
    work();
    return 'returned';
  } catch (error) {
    return error;
  }
};

@Injectable()
class FireAndForget {
  constructor(
    private readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(QUEUE)
    private readonly queue: TransactionAwareQueue<{ n: number }>,
  ) {}

  /** Leaves a promise running that registers work after the scope has ended. */
  @Transactional()
  async leave(late: Late, fail = false, release = Promise.resolve()) {
    void (async () => {
      await release;
      await new Promise((resolve) => setTimeout(resolve, 20));
      late.isActive = this.tx.isActive;
      late.add = await settle(() => this.queue.add({ n: 1 }));
      late.afterCommit = await settle(() => this.tx.afterCommit(() => 1));
      late.afterRollback = settleSync(() => this.tx.afterRollback(() => 1));
      late.manager = settleSync(() => this.tx.manager);
      late.nested = await settle(() => this.nested());
      late.done = true;
    })();
    if (fail) throw new Error('rolled back');
  }

  @Transactional({ propagation: Propagation.Required })
  async nested() {
    return 'ran';
  }

  /** A NESTED scope whose unawaited work registers after the savepoint was released. */
  @Transactional()
  async leaveFromNested(late: Late, gate: Promise<void>, ended: () => void) {
    await this.tx.withTransaction(
      async () => {
        void (async () => {
          await gate;
          late.add = await settle(() => this.queue.add({ n: 2 }));
          late.done = true;
        })();
      },
      { propagation: Propagation.Nested },
    );
    ended();
    await waitFor(() => late.done, 'the late add');
  }
}

describe('when work is registered after its transaction scope has ended', () => {
  let app: INestApplication;
  let service: FireAndForget;

  beforeAll(async () => {
    app = await createLibApp({
      providers: [FireAndForget],
      queues: [{ name: QUEUE }],
      listen: false,
    });
    service = app.get(FireAndForget);
  });

  afterAll(() => closeLibApp(app, [QUEUE]));

  it.each([
    ['committed', false],
    ['rolled back', true],
  ])(
    'should refuse it with TransactionClosedError once the transaction has %s, and report isActive false',
    async (_, fail) => {
      const late: Late = { done: false };
      const queue = app.get<TransactionAwareQueue>(
        `transactional:queue:${QUEUE}`,
      );
      const enqueued = queue.stats.enqueued;

      await service.leave(late, fail).catch(() => undefined);
      await waitFor(() => late.done, 'the late work');

      expect(late.isActive).toBe(false);
      for (const outcome of [
        late.add,
        late.afterCommit,
        late.afterRollback,
        late.manager,
        late.nested,
      ]) {
        expect(outcome).toBeInstanceOf(TransactionClosedError);
      }
      expect(String(late.add)).toMatch(/has already ended/);
      expect(queue.stats.enqueued).toBe(enqueued);
      expect(await queue.queue.getJobCounts()).toMatchObject({
        waiting: 0,
        delayed: 0,
      });
    },
  );

  it('should refuse an add() from a NESTED scope that was already released', async () => {
    const late: Late = { done: false };
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    await service.leaveFromNested(late, gate, open);
    expect(late.add).toBeInstanceOf(TransactionClosedError);
  });
});
