import { TransactionalError, TransactionAwareQueue } from '../src';
import { useAdversarialApp } from './support/adversarial-app';
import { dbQuery } from './support/db';
import { uniqueName } from './support/env';
import { findJob, waitFor } from './support/lib-app';

/**
 * adversarial9: what a job carries is what it was when add() was called. A plain Bull
 * `await queue.add(data)` writes `data` to Redis before it resolves, so code that reuses or
 * changes the object afterwards (a loop filling one payload object, a payload enriched after
 * the add) never changes the job. Inside a transaction `add()` resolves at once and the job
 * reaches Redis after the COMMIT: if the queue keeps a reference, the job gets the data as it
 * is at the commit, and a change that makes it unserialisable loses a committed job.
 * README: "Jobs reach Bull as a plain add() would put them there"; "A job the queue library
 * would refuse after the commit is refused at add(), inside the transaction".
 */
const PLAIN = uniqueName('a9-snap-plain');
const DURABLE = uniqueName('a9-snap-durable');
const TABLE = `a9_snap_outbox_${process.pid}`;

const app = useAdversarialApp({
  plain: PLAIN,
  durable: DURABLE,
  outboxTable: TABLE,
  outbox: {
    markBatchDelayMs: 1,
    relay: { enabled: true, graceMs: 1000, pollIntervalMs: 50 },
  },
});

async function outboxData(id: string): Promise<unknown> {
  const rows = await dbQuery(
    app.host.manager,
    `SELECT data FROM ${TABLE} WHERE queue = $1 AND id = $2`,
    [DURABLE, id],
  );
  if (rows.length !== 1) throw new Error(`no outbox row ${id}`);
  const { data } = rows[0];
  return typeof data === 'string' ? JSON.parse(data) : data;
}

/** Adds three jobs with one payload object, changed between the adds (awaited, as with Bull). */
async function addReusingOneObject(
  queue: TransactionAwareQueue<any>,
): Promise<string[]> {
  const payload = { step: -1, tag: 'reused' };
  const ids: string[] = [];
  for (let step = 0; step < 3; step++) {
    payload.step = step;
    ids.push(await queue.add(payload));
  }
  payload.step = 99; // after the last add, before the commit
  return ids;
}

it('control: outside a transaction, one payload object reused across awaited add() calls gives each job its own data (Bull semantics)', async () => {
  const ids = await addReusingOneObject(app.plain);
  for (let step = 0; step < 3; step++) {
    expect((await findJob(app.plainBull, ids[step]))?.data).toEqual({
      step,
      tag: 'reused',
    });
  }
});

it('plain queue in a transaction: each job carries the data it had at add(), not the object as it is at COMMIT', async () => {
  const ids = await app.host.withTransaction(() =>
    addReusingOneObject(app.plain),
  );
  const seen = await Promise.all(
    ids.map(async (id) => (await findJob(app.plainBull, id))?.data),
  );
  expect(seen).toEqual([0, 1, 2].map((step) => ({ step, tag: 'reused' })));
});

it('durable queue in a transaction: the job in Redis carries the data of its outbox row (what add() was given)', async () => {
  const ids = await app.host.withTransaction(() =>
    addReusingOneObject(app.durable),
  );
  for (let step = 0; step < 3; step++) {
    expect(await outboxData(ids[step])).toEqual({ step, tag: 'reused' });
  }
  const seen = await Promise.all(
    ids.map(async (id) => (await findJob(app.durableBull, id))?.data),
  );
  expect(seen).toEqual([0, 1, 2].map((step) => ({ step, tag: 'reused' })));
});

it('plain queue: a payload that becomes unserialisable after add() (a BigInt set before COMMIT) does not lose the committed job', async () => {
  const before = { ...app.plain.stats };
  const id = await app.host.withTransaction(async () => {
    const payload: Record<string, unknown> = { n: 1 };
    const jobId = await app.plain.add(payload);
    payload.total = BigInt(10); // e.g. enriched from a bigint column after the add
    return jobId;
  });
  expect(app.plain.stats.failed - before.failed).toBe(0);
  expect((await findJob(app.plainBull, id))?.data).toEqual({ n: 1 });
});

it('durable queue: a payload that becomes cyclic after add() still yields the committed job with its add()-time data (fast path or relay)', async () => {
  const id = await app.host.withTransaction(async () => {
    const payload: Record<string, unknown> = { n: 2 };
    const jobId = await app.durable.add(payload);
    payload.self = payload;
    return jobId;
  });
  await waitFor(
    async () => (await findJob(app.durableBull, id)) !== null,
    'the durable job',
    10_000,
  );
  expect((await findJob(app.durableBull, id))?.data).toEqual({ n: 2 });
});

it('plain queue: job options Bull cannot write (a BigInt delay) are refused at add(), and the other jobs of the transaction are enqueued', async () => {
  const before = { ...app.plain.stats };
  let refused: unknown;
  const keptId = await app.host.withTransaction(async () => {
    const kept = await app.plain.add({ n: 'kept' });
    refused = await app.plain
      .add({ n: 'bad-opts' }, { delay: BigInt(1000) as unknown as number })
      .then(
        (id) => `resolved with ${id}`,
        (error: unknown) => error,
      );
    return kept;
  });
  expect(refused).toBeInstanceOf(TransactionalError);
  expect(app.plain.stats.failed - before.failed).toBe(0);
  expect((await findJob(app.plainBull, keptId))?.data).toEqual({ n: 'kept' });
});

it('plain queue in a transaction: an object nested in the options (backoff) changed after add() does not change the job', async () => {
  const backoff = { type: 'fixed', delay: 1000 };
  const id = await app.host.withTransaction(async () => {
    const added = await app.plain.add({ n: 1 }, { attempts: 3, backoff });
    backoff.delay = 5;
    return added;
  });
  const job = await findJob(app.plainBull, id);
  expect((job?.opts as { backoff?: unknown } | undefined)?.backoff).toEqual({
    type: 'fixed',
    delay: 1000,
  });
});
