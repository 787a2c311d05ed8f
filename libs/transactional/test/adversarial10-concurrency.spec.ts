/**
 * adversarial10: concurrency inside one transaction. add() / afterCommit() racing the end of the
 * scope (k microtask hops, or a macrotask, after the method's last await), Promise.all of adds
 * and of NESTED scopes of which one fails, adds left running when a NESTED scope returns or
 * throws. The promise: a late call either is taken by the transaction (then its job exists iff
 * the transaction committed, its hook runs iff it committed) or is refused with
 * TransactionClosedError (then nothing exists and nothing runs); never enqueued silently
 * outside it, never lost after resolving.
 */
import { Propagation, TransactionClosedError } from '../src';
import { dbQuery } from './support/db';
import { uniqueName } from './support/env';
import { findJob, waitFor } from './support/lib-app';
import { useAdversarialApp } from './support/adversarial-app';

const PLAIN = uniqueName('a10-conc-plain');
const DURABLE = uniqueName('a10-conc-durable');
const TABLE = `a10_conc_outbox_${process.pid}`;
const GRACE_MS = 300;

const fx = useAdversarialApp({
  plain: PLAIN,
  durable: DURABLE,
  outboxTable: TABLE,
  outbox: {
    markBatchDelayMs: 1,
    relay: { enabled: true, graceMs: GRACE_MS, pollIntervalMs: 50 },
  },
});

const insert = (label: string) =>
  dbQuery(
    fx.host.manager,
    `INSERT INTO tx_spec_orders (id, label) VALUES (gen_random_uuid(), $1)`,
    [label],
  );

async function rowCount(label: string): Promise<number> {
  const rows = await dbQuery(
    fx.ds,
    `SELECT label FROM tx_spec_orders WHERE label = $1`,
    [label],
  );
  return rows.length;
}

/** Runs `fn` after `hops` microtask turns (0..n), or after a macrotask ('immediate', 'timer'). */
function later<T>(hops: number | 'immediate' | 'timer', fn: () => Promise<T>) {
  if (hops === 'immediate') return new Promise((r) => setImmediate(r)).then(fn);
  if (hops === 'timer') return new Promise((r) => setTimeout(r, 5)).then(fn);
  let p: Promise<unknown> = Promise.resolve();
  for (let i = 0; i < hops; i++) p = p.then(() => undefined);
  return p.then(fn);
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };
const settle = <T>(p: Promise<T>): Promise<Settled<T>> =>
  p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );

const HOPS: (number | 'immediate' | 'timer')[] = [
  ...Array.from({ length: 25 }, (_, i) => i),
  'immediate',
  'timer',
];

describe.each([
  ['commits', false],
  ['rolls back', true],
])('a scope that %s while an add()/afterCommit() races its end', (_, fails) => {
  it.each([
    ['plain', false],
    ['durable', true],
  ])(
    '%s add() and afterCommit(): each either taken by the transaction or refused with TransactionClosedError',
    async (_kind, isDurable) => {
      const queue = isDurable ? fx.durable : fx.plain;
      const bull = isDurable ? fx.durableBull : fx.plainBull;
      const outcomes: {
        hops: string;
        label: string;
        add: Promise<Settled<string>>;
        hook: Promise<Settled<void>>;
        ran: { count: number };
      }[] = [];
      for (const hops of HOPS) {
        const label = uniqueName(`a10c-${hops}`);
        const ran = { count: 0 };
        let add!: Promise<Settled<string>>;
        let hook!: Promise<Settled<void>>;
        await fx.host
          .withTransaction(async () => {
            await insert(label);
            add = settle(later(hops, () => queue.add({ label })));
            hook = settle(
              later(hops, () => fx.host.afterCommit(() => void ran.count++)),
            );
            if (fails) throw new Error('rollback');
          })
          .catch(() => undefined);
        outcomes.push({ hops: String(hops), label, add, hook, ran });
      }
      const summary: string[] = [];
      for (const o of outcomes) {
        const add = await o.add;
        const hook = await o.hook;
        const committed = (await rowCount(o.label)) === 1;
        expect(committed).toBe(!fails);
        if (add.ok) {
          // Taken: the job follows the transaction.
          if (committed) {
            await waitFor(
              async () => (await findJob(bull, add.value)) !== null,
              `job of ${o.hops}`,
              5000,
            );
          } else {
            expect({
              hops: o.hops,
              job: await findJob(bull, add.value),
            }).toEqual({ hops: o.hops, job: null });
          }
        } else {
          expect({ hops: o.hops, error: add.error }).toEqual({
            hops: o.hops,
            error: expect.any(TransactionClosedError),
          });
        }
        if (hook.ok) {
          expect({ hops: o.hops, ran: o.ran.count }).toEqual({
            hops: o.hops,
            ran: committed ? 1 : 0,
          });
        } else {
          expect({ hops: o.hops, error: hook.error }).toEqual({
            hops: o.hops,
            error: expect.any(TransactionClosedError),
          });
          expect({ hops: o.hops, ran: o.ran.count }).toEqual({
            hops: o.hops,
            ran: 0,
          });
        }
        summary.push(`${o.hops}:${add.ok ? 'in' : 'refused'}`);
      }
      // The sweep crosses the end of the scope: early hops taken, macrotasks refused.
      expect(summary[0]).toBe('0:in');
      expect(summary[summary.length - 1]).toBe('timer:refused');
      // Nothing is left in the outbox for a refused add or a rolled-back transaction.
      await new Promise((r) => setTimeout(r, GRACE_MS + 300));
      for (const o of outcomes) {
        const add = await o.add;
        if (add.ok && !fails) continue;
        if (add.ok) {
          expect(await findJob(bull, add.value)).toBeNull();
        }
      }
    },
  );
});

it('Promise.all of adds and of NESTED scopes, one failing: exactly the failing scope loses its row and jobs', async () => {
  const tag = uniqueName('a10c-all');
  const ids: Record<string, string[]> = {};
  const keep = (k: string, id: string) => (ids[k] ??= []).push(id);
  await fx.host.withTransaction(async () => {
    await insert(`${tag}-root`);
    const branch = (n: number, fail: boolean) =>
      fx.host
        .withTransaction(
          async () => {
            await insert(`${tag}-n${n}`);
            const [a, b] = await Promise.all([
              fx.plain.add({ n }),
              fx.durable.add({ n }),
            ]);
            keep(`n${n}`, a);
            keep(`n${n}`, b);
            const [c] = await fx.durable.addBulk([{ data: { n, bulk: true } }]);
            keep(`n${n}`, c);
            if (fail) throw new Error(`n${n} fails`);
          },
          { propagation: Propagation.Nested },
        )
        .catch(() => undefined);
    const rootAdds = Promise.all([
      fx.plain.add({ root: 1 }),
      fx.durable.add({ root: 2 }),
      fx.plain.addBulk([{ data: { root: 3 } }, { data: { root: 4 } }]),
    ]).then(([a, b, cd]) => {
      keep('root', a);
      keep('root', b);
      cd.forEach((id) => keep('root', id));
    });
    await Promise.all([
      branch(1, false),
      branch(2, true),
      branch(3, false),
      rootAdds,
    ]);
  });
  for (const k of ['root', 'n1', 'n3']) {
    expect(await rowCount(`${tag}-${k}`)).toBe(1);
  }
  expect(await rowCount(`${tag}-n2`)).toBe(0);
  const queueOf = (id: string) => id;
  void queueOf;
  await waitFor(
    async () => {
      for (const k of ['root', 'n1', 'n3'])
        for (const id of ids[k])
          if (
            !(await findJob(fx.plainBull, id)) &&
            !(await findJob(fx.durableBull, id))
          )
            return false;
      return true;
    },
    'the committed jobs',
    5000,
  );
  await new Promise((r) => setTimeout(r, GRACE_MS + 300));
  for (const id of ids.n2) {
    expect(await findJob(fx.plainBull, id)).toBeNull();
    expect(await findJob(fx.durableBull, id)).toBeNull();
  }
  const left = await dbQuery(
    fx.ds,
    `SELECT id FROM ${TABLE} WHERE id = ANY($1)`,
    [ids.n2],
  );
  expect(left).toEqual([]);
});

it.each([
  ['released', false],
  ['rolled back', true],
])(
  'adds not awaited when a NESTED scope returns (%s): every add that resolved follows the savepoint',
  async (_, fails) => {
    const tag = uniqueName('a10c-unawaited');
    const adds: Promise<Settled<string>>[] = [];
    const durableAdds: Promise<Settled<string>>[] = [];
    await fx.host.withTransaction(async () => {
      await fx.host
        .withTransaction(
          async () => {
            await insert(`${tag}-nested`);
            for (let i = 0; i < 3; i++) {
              adds.push(settle(fx.plain.add({ i })));
              durableAdds.push(settle(fx.durable.add({ i })));
              durableAdds.push(
                settle(
                  fx.durable.addBulk([{ data: { i } }]).then(([id]) => id),
                ),
              );
            }
            if (fails) throw new Error('nested fails');
          },
          { propagation: Propagation.Nested },
        )
        .catch(() => undefined);
      await insert(`${tag}-root`);
    });
    expect(await rowCount(`${tag}-nested`)).toBe(fails ? 0 : 1);
    expect(await rowCount(`${tag}-root`)).toBe(1);
    for (const [list, bull] of [
      [adds, fx.plainBull],
      [durableAdds, fx.durableBull],
    ] as const) {
      for (const p of list) {
        const r = await p;
        if (!r.ok) {
          expect(r.error).toBeInstanceOf(TransactionClosedError);
          continue;
        }
        if (fails) {
          await new Promise((res) => setTimeout(res, GRACE_MS + 200));
          expect(await findJob(bull, r.value)).toBeNull();
        } else {
          await waitFor(
            async () => (await findJob(bull, r.value)) !== null,
            `job ${r.value} of a released savepoint`,
            5000,
          );
        }
      }
    }
  },
);
