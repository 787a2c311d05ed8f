/**
 * adversarial10: a fast-check model of the propagation matrix with queues, whose oracle is the
 * documented semantics (not the database): trees of scopes 1-3 deep, every propagation at every
 * level, each scope writing a row, adding a plain and/or a durable job, registering hooks,
 * throwing or not (caught by its parent or not), children in sequence or concurrent, and a
 * "late" add() fired from a scope after it returned. For every scope the model computes where
 * its work belongs (no transaction, or a frame of a transaction: savepoints up to the scope
 * that opened it) and from that whether its row, its jobs (by id in Redis, and outbox rows)
 * and its hooks must exist / have run:
 *   - REQUIRED / MANDATORY / SUPPORTS join; NESTED opens a savepoint (dropped when it throws
 *     out); REQUIRES_NEW, and REQUIRED/NESTED without a transaction, open one of their own;
 *     SUPPORTS/NEVER without one and NOT_SUPPORTED run outside (add() enqueues at once).
 *   - MANDATORY without a transaction and NEVER inside one throw before the body runs.
 *   - a late add() either resolves (its job then follows its frame) or rejects with
 *     TransactionClosedError (and no job exists); outside a transaction it enqueues.
 */
import fc from 'fast-check';
import {
  Propagation,
  TransactionClosedError,
  TransactionNotAllowedError,
  TransactionRequiredError,
} from '../src';
import { dbQuery } from './support/db';
import { uniqueName } from './support/env';
import { findJob, waitFor } from './support/lib-app';
import { useAdversarialApp } from './support/adversarial-app';

const PLAIN = uniqueName('a10-model-plain');
const DURABLE = uniqueName('a10-model-durable');
const TABLE = `a10_model_outbox_${process.pid}`;
const RUNS = Number(process.env.MODEL10_RUNS ?? 60);

interface Node {
  prop: Propagation;
  plain: boolean;
  durable: boolean;
  hooks: boolean;
  late: boolean;
  throws: boolean;
  caught: boolean;
  concurrent: boolean;
  children: Node[];
}

const propagations = fc.constantFrom(
  Propagation.Required,
  Propagation.RequiresNew,
  Propagation.Nested,
  Propagation.Nested,
  Propagation.Supports,
  Propagation.NotSupported,
  Propagation.Mandatory,
  Propagation.Never,
);

function nodeArb(depth: number): fc.Arbitrary<Node> {
  return fc.record({
    prop: propagations,
    plain: fc.boolean(),
    durable: fc.boolean(),
    hooks: fc.boolean(),
    late: fc.boolean(),
    throws: fc.boolean(),
    caught: fc.boolean(),
    concurrent: fc.boolean(),
    children:
      depth >= 3
        ? fc.constant([])
        : fc.array(nodeArb(depth + 1), { maxLength: depth === 1 ? 3 : 2 }),
  });
}

/** Where a scope's work belongs: nowhere (no transaction) or a frame of a transaction. */
type Ctx = null | { opener: Node; savepoints: Node[] };

interface Expect {
  path: string;
  node: Node;
  ctx: Ctx;
  entered: boolean;
}

/** The model: the context of every scope and which scopes throw out of themselves. */
function simulate(root: Node) {
  const expects: Expect[] = [];
  const throwsOut = new Map<Node, boolean>();
  const visit = (node: Node, parent: Ctx, path: string): boolean => {
    let ctx: Ctx;
    let entered = true;
    switch (node.prop) {
      case Propagation.Required:
        ctx = parent ?? { opener: node, savepoints: [] };
        break;
      case Propagation.RequiresNew:
        ctx = { opener: node, savepoints: [] };
        break;
      case Propagation.Nested:
        ctx = parent
          ? { opener: parent.opener, savepoints: [...parent.savepoints, node] }
          : { opener: node, savepoints: [] };
        break;
      case Propagation.Supports:
        ctx = parent;
        break;
      case Propagation.Mandatory:
        ctx = parent;
        entered = parent !== null;
        break;
      case Propagation.Never:
        ctx = null;
        entered = parent === null;
        break;
      case Propagation.NotSupported:
        ctx = null;
        break;
      default:
        throw new Error('unknown propagation');
    }
    expects.push({ path, node, ctx, entered });
    if (!entered) {
      throwsOut.set(node, true);
      return true;
    }
    let out = false;
    node.children.forEach((child, i) => {
      // NOTE: in sequence, a child that throws out uncaught stops its later siblings.
      if (out && !node.concurrent) return;
      const childOut = visit(child, ctx, `${path}.${i}`);
      if (childOut && !child.caught) out = true;
    });
    // Children never visited (after an uncaught failure in sequence) are not entered.
    if (node.throws) out = true;
    throwsOut.set(node, out);
    return out;
  };
  visit(root, null, 'r');
  // Unvisited nodes: mark as not entered.
  const visited = new Set(expects.map((e) => e.node));
  const walk = (node: Node, path: string) => {
    if (!visited.has(node)) {
      expects.push({ path, node, ctx: null, entered: false });
      // descendants too
    }
    node.children.forEach((c, i) => walk(c, `${path}.${i}`));
  };
  walk(root, 'r');
  const kept = (ctx: Ctx) =>
    ctx === null ||
    (!throwsOut.get(ctx.opener) &&
      ctx.savepoints.every((s) => !throwsOut.get(s)));
  return { expects, kept };
}

class ScopeError extends Error {}

interface Observed {
  plainId?: string;
  durableId?: string;
  late?: Promise<
    { ok: true; id: string; durable: boolean } | { ok: false; error: unknown }
  >;
  entered: boolean;
  active?: boolean;
}

const app = useAdversarialApp({
  plain: PLAIN,
  durable: DURABLE,
  outboxTable: TABLE,
  poolSize: 30,
  outbox: {
    markBatchDelayMs: 1,
    relay: { enabled: true, graceMs: 300, pollIntervalMs: 50 },
  },
});

async function runCase(root: Node, tag: string) {
  const observed = new Map<string, Observed>();
  const hooks = new Map<string, number>();
  const bump = (key: string) => hooks.set(key, (hooks.get(key) ?? 0) + 1);

  const exec = (node: Node, path: string): Promise<void> =>
    app.host.withTransaction(
      async () => {
        const seen: Observed = { entered: true, active: app.host.isActive };
        observed.set(path, seen);
        await dbQuery(
          app.host.manager,
          `INSERT INTO tx_spec_orders (id, label) VALUES (gen_random_uuid(), $1)`,
          [`${tag}-${path}`],
        );
        if (node.plain) seen.plainId = await app.plain.add({ tag, path });
        if (node.durable) seen.durableId = await app.durable.add({ tag, path });
        if (node.hooks) {
          await app.host.afterCommit(() => bump(`${path}:commit`));
          app.host.afterRollback(() => bump(`${path}:rollback`));
        }
        if (node.late) {
          const useDurable = node.durable;
          seen.late = new Promise((resolve) => setImmediate(resolve)).then(() =>
            (useDurable ? app.durable : app.plain)
              .add({ tag, path, late: true })
              .then(
                (id) => ({ ok: true as const, id, durable: useDurable }),
                (error: unknown) => ({ ok: false as const, error }),
              ),
          );
        }
        const runChild = (child: Node, i: number) =>
          exec(child, `${path}.${i}`).catch((error: unknown) => {
            if (!child.caught) throw error;
          });
        if (node.concurrent) {
          const results = await Promise.allSettled(node.children.map(runChild));
          const failed = results.find((r) => r.status === 'rejected');
          if (failed) throw (failed as PromiseRejectedResult).reason;
        } else {
          for (const [i, child] of node.children.entries()) {
            await runChild(child, i);
          }
        }
        if (node.throws) throw new ScopeError(path);
      },
      { propagation: node.prop },
    );

  const topError = await exec(root, 'r').then(
    () => undefined,
    (error: unknown) => error,
  );
  const { expects, kept } = simulate(root);

  // The top-level outcome.
  const rootExpect = expects.find((e) => e.path === 'r')!;
  if (!rootExpect.entered) {
    expect(topError).toBeInstanceOf(
      root.prop === Propagation.Mandatory
        ? TransactionRequiredError
        : TransactionNotAllowedError,
    );
  }

  const rows: { label: string }[] = await dbQuery(
    app.ds,
    `SELECT label FROM tx_spec_orders WHERE label LIKE $1`,
    [`${tag}-%`],
  );
  const rowSet = new Set(rows.map((r) => r.label));

  const mustExistPlain: string[] = [];
  const mustExistDurable: string[] = [];
  const mustNotExist: { id: string; durable: boolean; path: string }[] = [];
  for (const e of expects) {
    const seen = observed.get(e.path);
    const detail = `${e.path} (${e.node.prop}, ctx ${e.ctx ? 'tx' : 'none'})`;
    expect({ path: detail, entered: Boolean(seen) }).toEqual({
      path: detail,
      entered: e.entered,
    });
    if (!seen) continue;
    expect({ path: detail, active: seen.active }).toEqual({
      path: detail,
      active: e.ctx !== null,
    });
    const keep = kept(e.ctx);
    expect({ path: detail, row: rowSet.has(`${tag}-${e.path}`) }).toEqual({
      path: detail,
      row: keep,
    });
    if (seen.plainId) {
      if (keep) mustExistPlain.push(seen.plainId);
      else
        mustNotExist.push({ id: seen.plainId, durable: false, path: detail });
    }
    if (seen.durableId) {
      if (keep) mustExistDurable.push(seen.durableId);
      else
        mustNotExist.push({ id: seen.durableId, durable: true, path: detail });
    }
    if (e.node.hooks) {
      expect({
        path: detail,
        commit: hooks.get(`${e.path}:commit`) ?? 0,
        rollback: hooks.get(`${e.path}:rollback`) ?? 0,
      }).toEqual({
        path: detail,
        commit: keep ? 1 : 0,
        rollback: e.ctx !== null && !keep ? 1 : 0,
      });
    }
    if (seen.late) {
      const late = await seen.late;
      if (late.ok) {
        // Resolved: it was taken by a frame that was still open, or outside a transaction.
        if (keep)
          (late.durable ? mustExistDurable : mustExistPlain).push(late.id);
        else
          mustNotExist.push({
            id: late.id,
            durable: late.durable,
            path: `${detail} late`,
          });
      } else {
        expect({ path: detail, late: late.error }).toEqual({
          path: detail,
          late: expect.any(TransactionClosedError),
        });
        expect(e.ctx).not.toBeNull();
      }
    }
  }

  // Plain jobs of committed work are in Redis by the time the caller resolved (after-commit
  // work is awaited); the late ones may have been flushed by a commit that happened later.
  await waitFor(
    async () => {
      for (const id of mustExistPlain)
        if (!(await findJob(app.plainBull, id))) return false;
      for (const id of mustExistDurable)
        if (!(await findJob(app.durableBull, id))) return false;
      return true;
    },
    `the jobs of committed work of ${JSON.stringify(root)}`,
    5000,
  );
  const ids = mustNotExist.map((m) => m.id);
  const outboxRows: { id: string }[] = ids.length
    ? await dbQuery(app.ds, `SELECT id FROM ${TABLE} WHERE id = ANY($1)`, [ids])
    : [];
  expect(outboxRows).toEqual([]);
  for (const m of mustNotExist) {
    expect({
      path: m.path,
      inRedis:
        (await findJob(m.durable ? app.durableBull : app.plainBull, m.id)) !==
        null,
    }).toEqual({ path: m.path, inRedis: false });
  }
}

it(`jobs, rows and hooks follow the documented propagation semantics, over ${RUNS} trees`, async () => {
  let n = 0;
  await fc.assert(
    fc.asyncProperty(nodeArb(1), async (root) => {
      await runCase(root, `a10m-${process.pid}-${++n}`);
    }),
    {
      numRuns: RUNS,
      ...(process.env.MODEL10_SEED
        ? {
            seed: Number(process.env.MODEL10_SEED),
            path: process.env.MODEL10_PATH,
          }
        : {}),
    },
  );
  // NOTE: useAdversarialApp expects no unhandled rejection or uncaught exception after it.
}, 600_000);
