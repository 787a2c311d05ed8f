/**
 * Adversarial: custom job ids shared across frames and transactions (plain and durable), durable
 * adds left in flight when their NESTED scope ends (transaction control sent by hand: see
 * transaction-control.spec.ts).
 */
import { Propagation } from '../src';
import { useAdversarialApp } from './support/adversarial-app';
import { uniqueName } from './support/env';
import { findJob, inRedis, waitFor } from './support/lib-app';
import { Order } from './support/order.entity';

const PLAIN = uniqueName('adv-ids-plain');
const DURABLE = uniqueName('adv-ids-durable');
const TABLE = 'tx_adv_ids_outbox';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const NESTED = { propagation: Propagation.Nested };
const REQUIRES_NEW = { propagation: Propagation.RequiresNew };

const app = useAdversarialApp({
  plain: PLAIN,
  durable: DURABLE,
  outboxTable: TABLE,
});

const rows = (label: string) => app.ds.getRepository(Order).countBy({ label });

describe.each([
  ['plain', () => app.plain, () => app.plainBull],
  ['durable', () => app.durable, () => app.durableBull],
] as const)('%s: one custom jobId in several frames', (_kind, q, bull) => {
  it('first added in a NESTED scope that rolls back, then in the root: the root data is enqueued', async () => {
    const jobId = uniqueName('j');
    await app.host.withTransaction(async () => {
      await app.host
        .withTransaction(async () => {
          await q().add({ from: 'nested' }, { jobId });
          throw new Error('undo');
        }, NESTED)
        .catch(() => undefined);
      await q().add({ from: 'root' }, { jobId });
    });
    await waitFor(async () => inRedis(bull(), jobId), 'job', 5000);
    await sleep(500); // relay (graceMs 200) gets its chance too
    expect((await findJob(bull(), jobId))!.data).toEqual({ from: 'root' });
  });

  it('added by a transaction that rolls back AFTER another one committed the same id: the committed data stays', async () => {
    const jobId = uniqueName('j');
    let committed!: () => void;
    const afterCommit = new Promise<void>((r) => (committed = r));
    await Promise.all([
      app.host
        .withTransaction(async () => {
          await q().add({ from: 'committed' }, { jobId });
        })
        .then(() => committed()),
      app.host
        .withTransaction(async () => {
          await q().add({ from: 'rolled-back' }, { jobId });
          await afterCommit;
          throw new Error('undo');
        })
        .catch(() => undefined),
    ]);
    await waitFor(async () => inRedis(bull(), jobId), 'job', 5000);
    await sleep(500);
    expect((await findJob(bull(), jobId))!.data).toEqual({ from: 'committed' });
  });

  it('added first by a rolled-back REQUIRES_NEW, then by its committing caller: the caller data is enqueued', async () => {
    const jobId = uniqueName('j');
    await app.host.withTransaction(async () => {
      await app.host
        .withTransaction(async () => {
          await q().add({ from: 'inner' }, { jobId });
          throw new Error('undo');
        }, REQUIRES_NEW)
        .catch(() => undefined);
      await q().add({ from: 'outer' }, { jobId });
    });
    await waitFor(async () => inRedis(bull(), jobId), 'job', 5000);
    await sleep(500);
    expect((await findJob(bull(), jobId))!.data).toEqual({ from: 'outer' });
  });

  it('addBulk in a NESTED scope with a duplicate id that rolls back, same ids re-added in a released one', async () => {
    const a = uniqueName('a');
    const b = uniqueName('b');
    await app.host.withTransaction(async () => {
      await app.host
        .withTransaction(async () => {
          await q().addBulk([
            { data: { v: 'x1' }, opts: { jobId: a } },
            { data: { v: 'x2' }, opts: { jobId: a } },
            { data: { v: 'x3' }, opts: { jobId: b } },
          ]);
          throw new Error('undo');
        }, NESTED)
        .catch(() => undefined);
      await app.host.withTransaction(async () => {
        await q().addBulk([
          { data: { v: 'y1' }, opts: { jobId: b } },
          { data: { v: 'y2' }, opts: { jobId: a } },
        ]);
      }, NESTED);
    });
    await waitFor(
      async () => (await inRedis(bull(), a)) && (await inRedis(bull(), b)),
      'jobs',
      5000,
    );
    await sleep(500);
    expect((await findJob(bull(), a))!.data).toEqual({ v: 'y2' });
    expect((await findJob(bull(), b))!.data).toEqual({ v: 'y1' });
  });
});

it('durable add() not awaited in a NESTED scope that returns at once: the committed job still reaches Redis', async () => {
  const label = uniqueName('na');
  let pending!: Promise<unknown>;
  let id: string | undefined;
  const jobId = uniqueName('na-j');
  await app.host.withTransaction(async () => {
    await app.host.withTransaction(async () => {
      await app.host.getRepository(Order).insert({ label });
      pending = app.durable.add({ label }, { jobId }).then(
        (v) => (id = v),
        (e: unknown) => e,
      );
    }, NESTED);
  });
  await pending;
  expect(await rows(label)).toBe(1);
  await waitFor(
    async () => inRedis(app.durableBull, jobId),
    'relayed job',
    5000,
  );
  void id;
});

it('durable add() not awaited in a NESTED scope that then throws: no job, ever', async () => {
  const label = uniqueName('nt');
  let pending!: Promise<unknown>;
  const jobId = uniqueName('nt-j');
  await app.host.withTransaction(async () => {
    await app.host
      .withTransaction(async () => {
        await app.host.getRepository(Order).insert({ label });
        pending = app.durable
          .add({ label }, { jobId })
          .catch((e: unknown) => e);
        throw new Error('undo');
      }, NESTED)
      .catch(() => undefined);
  });
  await pending;
  await sleep(600);
  expect(await rows(label)).toBe(0);
  expect(await inRedis(app.durableBull, jobId)).toBe(false);
});
