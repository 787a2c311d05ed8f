/**
 * adversarial10: TransactionHost hooks as a user writes them. afterCommit / afterRollback hooks
 * that enqueue (plain and durable queues), open transactions (REQUIRED, REQUIRES_NEW, a failing
 * one), register further hooks, hang past afterCommitTimeoutMs, or are registered from a scope
 * that already ended while its enclosing transaction is still open. README: "A failing hook is
 * logged and counted; it never turns a committed request into an error", "after-commit work runs
 * once the transaction is no longer bound", "work registered after its scope has ended is
 * refused (TransactionClosedError)".
 */
import { Propagation, TransactionClosedError, TransactionRunner } from '../src';
import { dbQuery } from './support/db';
import { uniqueName } from './support/env';
import { findJob, waitFor } from './support/lib-app';
import { useAdversarialApp } from './support/adversarial-app';

const PLAIN = uniqueName('a10-hooks-plain');
const DURABLE = uniqueName('a10-hooks-durable');
const TABLE = `a10_hooks_outbox_${process.pid}`;
const HOOK_TIMEOUT_MS = 500;
const GRACE_MS = 400;

const app = useAdversarialApp({
  plain: PLAIN,
  durable: DURABLE,
  outboxTable: TABLE,
  moduleOptions: { afterCommitTimeoutMs: HOOK_TIMEOUT_MS },
  outbox: {
    markBatchDelayMs: 1,
    relay: { enabled: true, graceMs: GRACE_MS, pollIntervalMs: 50 },
  },
});
let runner: TransactionRunner;
beforeAll(() => {
  runner = app.nest.get(TransactionRunner);
});

const insert = (label: string) =>
  dbQuery(
    app.host.manager,
    `INSERT INTO tx_spec_orders (id, label) VALUES (gen_random_uuid(), $1)`,
    [label],
  );

async function rows(label: string): Promise<number> {
  return (
    await dbQuery(app.ds, `SELECT label FROM tx_spec_orders WHERE label = $1`, [
      label,
    ])
  ).length;
}

const inPlain = async (id: string) =>
  (await findJob(app.plainBull, id)) !== null;
const inDurable = async (id: string) =>
  (await findJob(app.durableBull, id)) !== null;

it('an afterCommit hook enqueues to plain and durable queues with no transaction bound: both jobs exist when the caller resolves', async () => {
  const seen: { active?: boolean; ids?: string[] } = {};
  const result = await app.host.withTransaction(async () => {
    await insert(uniqueName('a10h-enqueue'));
    await app.host.afterCommit(async () => {
      seen.active = app.host.isActive;
      seen.ids = [
        await app.plain.add({ from: 'hook' }),
        await app.durable.add({ from: 'hook' }),
        ...(await app.durable.addBulk([{ data: { from: 'hook-bulk' } }])),
      ];
    });
    return 'value';
  });
  expect(result).toBe('value');
  expect(seen.active).toBe(false);
  expect(await inPlain(seen.ids![0])).toBe(true);
  expect(await inDurable(seen.ids![1])).toBe(true);
  expect(await inDurable(seen.ids![2])).toBe(true);
});

it('an afterCommit hook opens REQUIRED and REQUIRES_NEW transactions (one failing) and registers hooks in them: each job follows its own transaction, in order', async () => {
  const tag = uniqueName('a10h-open');
  const order: string[] = [];
  const ids: Record<string, string> = {};
  const result = await app.host.withTransaction(async () => {
    await insert(`${tag}-outer`);
    ids.outer = await app.plain.add({ tag, at: 'outer' });
    await app.host.afterCommit(async () => {
      order.push('hook:start');
      await app.host.withTransaction(async () => {
        await insert(`${tag}-h1`);
        ids.h1 = await app.durable.add({ tag, at: 'h1' });
        await app.host.afterCommit(() => void order.push('h1:afterCommit'));
        await app.host
          .withTransaction(
            async () => {
              await insert(`${tag}-h1-new-fails`);
              ids.h1NewFails = await app.plain.add({ tag, at: 'h1-new-fails' });
              await app.host.afterCommit(() => void order.push('never'));
              app.host.afterRollback(
                () => void order.push('h1-new:afterRollback'),
              );
              throw new Error('inner REQUIRES_NEW fails');
            },
            { propagation: Propagation.RequiresNew },
          )
          .catch(() => order.push('h1-new:caught'));
        await app.host.withTransaction(
          async () => {
            await insert(`${tag}-h1-new`);
            ids.h1New = await app.durable.add({ tag, at: 'h1-new' });
            await app.host.afterCommit(
              () => void order.push('h1-new:afterCommit'),
            );
          },
          { propagation: Propagation.RequiresNew },
        );
        order.push('h1:body-end');
      });
      order.push('hook:end');
    });
    await app.host.afterCommit(() => void order.push('second hook'));
    return 42;
  });
  expect(result).toBe(42);
  expect(order).toEqual([
    'hook:start',
    'h1-new:afterRollback',
    'h1-new:caught',
    'h1-new:afterCommit',
    'h1:body-end',
    'h1:afterCommit',
    'hook:end',
    'second hook',
  ]);
  expect(await rows(`${tag}-outer`)).toBe(1);
  expect(await rows(`${tag}-h1`)).toBe(1);
  expect(await rows(`${tag}-h1-new`)).toBe(1);
  expect(await rows(`${tag}-h1-new-fails`)).toBe(0);
  expect(await inPlain(ids.outer)).toBe(true);
  expect(await inDurable(ids.h1)).toBe(true);
  expect(await inDurable(ids.h1New)).toBe(true);
  expect(await inPlain(ids.h1NewFails)).toBe(false);
});

it('an afterRollback hook compensates in a transaction of its own: its jobs exist, its hooks run, the caller gets its own error', async () => {
  const tag = uniqueName('a10h-compensate');
  const original = new Error('the caller fails');
  const ids: string[] = [];
  const ran: string[] = [];
  const error = await app.host
    .withTransaction(async () => {
      await insert(`${tag}-doomed`);
      ids.push(await app.plain.add({ doomed: true }));
      app.host.afterRollback(() =>
        app.host.withTransaction(async () => {
          ran.push(`active:${app.host.isActive}`);
          await insert(`${tag}-compensation`);
          ids.push(await app.durable.add({ compensation: true }));
          ids.push(await app.plain.add({ compensation: true }));
          await app.host.afterCommit(
            () => void ran.push('compensation committed'),
          );
        }),
      );
      throw original;
    })
    .catch((e: unknown) => e);
  expect(error).toBe(original);
  expect(ran).toEqual(['active:true', 'compensation committed']);
  expect(await rows(`${tag}-doomed`)).toBe(0);
  expect(await rows(`${tag}-compensation`)).toBe(1);
  expect(await inPlain(ids[0])).toBe(false);
  expect(await inDurable(ids[1])).toBe(true);
  expect(await inPlain(ids[2])).toBe(true);
});

it.each([
  ['commits', false],
  ['rolls back', true],
])(
  'the afterRollback hook of a rolled-back NESTED scope opens a REQUIRED transaction once the outer one ended (outer %s): a transaction of its own, its job exists',
  async (_, outerFails) => {
    const tag = uniqueName('a10h-sp');
    const ids: Record<string, string> = {};
    const ran: string[] = [];
    await app.host
      .withTransaction(async () => {
        await insert(`${tag}-outer`);
        await app.host
          .withTransaction(
            async () => {
              await insert(`${tag}-nested`);
              ids.nested = await app.plain.add({ nested: true });
              app.host.afterRollback(() =>
                app.host.withTransaction(async () => {
                  ran.push(`sp-hook active:${app.host.isActive}`);
                  await insert(`${tag}-sp-hook`);
                  ids.spHook = await app.durable.add({ spHook: true });
                }),
              );
              throw new Error('savepoint rolls back');
            },
            { propagation: Propagation.Nested },
          )
          .catch(() => undefined);
        app.host.afterRollback(() => void ran.push('outer afterRollback'));
        await app.host.afterCommit(() => void ran.push('outer afterCommit'));
        ids.outer = await app.plain.add({ outer: true });
        if (outerFails) throw new Error('outer fails');
      })
      .catch(() => undefined);
    expect(ran).toEqual([
      'sp-hook active:true',
      outerFails ? 'outer afterRollback' : 'outer afterCommit',
    ]);
    expect(await rows(`${tag}-nested`)).toBe(0);
    expect(await rows(`${tag}-outer`)).toBe(outerFails ? 0 : 1);
    expect(await rows(`${tag}-sp-hook`)).toBe(1);
    expect(await inPlain(ids.nested)).toBe(false);
    expect(await inPlain(ids.outer)).toBe(!outerFails);
    expect(await inDurable(ids.spHook)).toBe(true);
  },
);

it('hooks, add() and manager registered from a REQUIRES_NEW scope after it ended, while the enclosing transaction is still open, are refused (not attached to the enclosing transaction)', async () => {
  const tag = uniqueName('a10h-late');
  let fire!: () => void;
  const gate = new Promise<void>((r) => (fire = r));
  let late!: Promise<Record<string, unknown>>;
  const ran: string[] = [];
  await app.host.withTransaction(async () => {
    await insert(`${tag}-outer`);
    await app.host.withTransaction(
      async () => {
        await insert(`${tag}-inner`);
        late = gate.then(async () => {
          const out: Record<string, unknown> = { active: app.host.isActive };
          out.afterCommit = await app.host
            .afterCommit(() => void ran.push('late afterCommit'))
            .then(
              () => 'accepted',
              (e: unknown) => e,
            );
          try {
            app.host.afterRollback(() => void ran.push('late afterRollback'));
            out.afterRollback = 'accepted';
          } catch (e) {
            out.afterRollback = e;
          }
          out.add = await app.plain.add({ late: true }).then(
            (id) => `accepted ${id}`,
            (e: unknown) => e,
          );
          out.durableAdd = await app.durable.add({ late: true }).then(
            (id) => `accepted ${id}`,
            (e: unknown) => e,
          );
          try {
            void app.host.manager;
            out.manager = 'accepted';
          } catch (e) {
            out.manager = e;
          }
          return out;
        });
      },
      { propagation: Propagation.RequiresNew },
    );
    // The inner transaction has committed; the outer one is still open.
    fire();
    await late;
    await insert(`${tag}-outer-after`);
  });
  const out = await late;
  expect(out).toEqual({
    active: false,
    afterCommit: expect.any(TransactionClosedError),
    afterRollback: expect.any(TransactionClosedError),
    add: expect.any(TransactionClosedError),
    durableAdd: expect.any(TransactionClosedError),
    manager: expect.any(TransactionClosedError),
  });
  expect(ran).toEqual([]);
  expect(await rows(`${tag}-outer`)).toBe(1);
  expect(await rows(`${tag}-inner`)).toBe(1);
  expect(await rows(`${tag}-outer-after`)).toBe(1);
});

it('a hook that hangs past afterCommitTimeoutMs, then enqueues and opens a transaction: the caller gets its value at the deadline, every job arrives, later hooks run', async () => {
  const tag = uniqueName('a10h-hang');
  let release!: () => void;
  const hung = new Promise<void>((r) => (release = r));
  const ids: Record<string, string> = {};
  const before = runner.stats.hookPhasesDetached;
  const started = Date.now();
  const result = await app.host.withTransaction(async () => {
    await insert(`${tag}-outer`);
    ids.first = await app.durable.add({ first: true });
    await app.host.afterCommit(async () => {
      await hung;
      ids.fromHook = await app.plain.add({ fromHook: true });
      await app.host.withTransaction(async () => {
        await insert(`${tag}-from-hook`);
        ids.fromHookTx = await app.durable.add({ fromHookTx: true });
      });
    });
    ids.after = await app.durable.add({ after: true });
    ids.afterPlain = await app.plain.add({ afterPlain: true });
    return 'done';
  });
  expect(result).toBe('done');
  expect(Date.now() - started).toBeLessThan(HOOK_TIMEOUT_MS + 1500);
  expect(runner.stats.hookPhasesDetached - before).toBe(1);
  expect(await inDurable(ids.first)).toBe(true);
  release();
  await waitFor(
    async () =>
      Boolean(ids.fromHookTx) &&
      (await inPlain(ids.fromHook)) &&
      (await inDurable(ids.fromHookTx)) &&
      (await inDurable(ids.after)) &&
      (await inPlain(ids.afterPlain)),
    'the jobs of and after the hung hook',
    10_000,
  );
  expect(await rows(`${tag}-from-hook`)).toBe(1);
});

it('hook failures of an inner REQUIRES_NEW reach neither its caller nor the outer transaction; they are counted', async () => {
  const tag = uniqueName('a10h-inner-fail');
  const before = runner.stats.hookFailures;
  const ids: string[] = [];
  const result = await app.host.withTransaction(async () => {
    await insert(`${tag}-outer`);
    const inner = await app.host.withTransaction(
      async () => {
        await insert(`${tag}-inner`);
        await app.host.afterCommit(() => {
          throw new Error('sync');
        });
        ids.push(await app.plain.add({ inner: true }));
        await app.host.afterCommit(() => Promise.reject(new Error('async')));
        await app.host.afterCommit(() => {
          // a hook that opens a MANDATORY scope: refused, no transaction is bound
          return app.host.withTransaction(async () => undefined, {
            propagation: Propagation.Mandatory,
          });
        });
        ids.push(await app.durable.add({ inner: true }));
        return 'inner value';
      },
      { propagation: Propagation.RequiresNew },
    );
    ids.push(await app.plain.add({ outer: true }));
    return inner;
  });
  expect(result).toBe('inner value');
  expect(runner.stats.hookFailures - before).toBe(3);
  expect(await inPlain(ids[0])).toBe(true);
  expect(await inDurable(ids[1])).toBe(true);
  expect(await inPlain(ids[2])).toBe(true);
});

it('a chain of hooks, each opening a transaction that registers the next hook, runs to the end in order', async () => {
  const order: number[] = [];
  const ids: string[] = [];
  const step = (n: number): Promise<void> =>
    app.host.withTransaction(async () => {
      ids.push(await (n % 2 ? app.durable : app.plain).add({ n }));
      await app.host.afterCommit(async () => {
        order.push(n);
        if (n < 6) await step(n + 1);
        order.push(-n);
      });
    });
  await step(1);
  expect(order).toEqual([1, 2, 3, 4, 5, 6, -6, -5, -4, -3, -2, -1]);
  for (const [i, id] of ids.entries()) {
    expect(await ((i + 1) % 2 ? inDurable : inPlain)(id)).toBe(true);
  }
});

it('afterCommit inside an afterRollback hook runs at once; afterRollback inside an afterCommit hook is ignored without an error', async () => {
  const ran: string[] = [];
  await app.host
    .withTransaction(async () => {
      app.host.afterRollback(async () => {
        await app.host.afterCommit(() => void ran.push('commit-in-rollback'));
        ran.push('rollback hook end');
      });
      throw new Error('rolls back');
    })
    .catch(() => undefined);
  await app.host.withTransaction(async () => {
    await app.host.afterCommit(() => {
      app.host.afterRollback(() => void ran.push('never'));
      ran.push('commit hook end');
    });
  });
  expect(ran).toEqual([
    'commit-in-rollback',
    'rollback hook end',
    'commit hook end',
  ]);
});

it('afterCommit() / afterRollback() given something that is not a function (a promise) is refused at once with a TypeError, inside and outside a transaction', async () => {
  const notAFunction = Promise.resolve('already running') as any;
  const inside = await app.host
    .withTransaction(async () => {
      const commit = await app.host.afterCommit(notAFunction).then(
        () => 'accepted',
        (e: unknown) => e,
      );
      let rollback: unknown = 'accepted';
      try {
        app.host.afterRollback(notAFunction);
      } catch (e) {
        rollback = e;
      }
      return { commit, rollback };
    })
    .catch((e: unknown) => ({ commit: e, rollback: e }));
  const outside = await app.host.afterCommit(notAFunction).then(
    () => 'accepted',
    (e: unknown) => e,
  );
  expect({ inside, outside }).toEqual({
    inside: {
      commit: expect.any(TypeError),
      rollback: expect.any(TypeError),
    },
    outside: expect.any(TypeError),
  });
});
