import { INestApplication } from '@nestjs/common';
import type { Queue } from 'bull';
import * as fc from 'fast-check';
import {
  getTransactionAwareQueueToken,
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  findJob,
} from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';
import { LIB_QUEUE } from './support/queue-kind';

/**
 * adversarial4: "Jobs reach Bull as a plain add() would put them there" and, through the
 * outbox, "stored as given ... so the relay hands them over unchanged". For random option sets,
 * the job in Redis must carry the same options whether it was added by a plain `queue.add()`
 * outside a transaction, deferred (plain), durable through the fast path, or durable through
 * the relay. Compared: `name`, `data` and `opts` minus the fields that differ by nature
 * (`jobId`, `timestamp`).
 */
const FAST = uniqueName('a4-opt-fast');
const RELAYED = uniqueName('a4-opt-relay');
const REF = uniqueName('a4-opt-ref');
const TABLE_FAST = `a4_opt_fast_${process.pid}`;
const TABLE_RELAY = `a4_opt_relay_${process.pid}`;

const optionArb = fc.record(
  {
    priority: fc.integer({ min: 1, max: 1000 }),
    delay: fc.integer({ min: 1, max: 60_000 }),
    lifo: fc.boolean(),
    attempts: fc.integer({ min: 1, max: 9 }),
    backoff: fc.oneof(
      fc.integer({ min: 1, max: 5000 }),
      fc.record({
        type: fc.constantFrom('fixed', 'exponential'),
        delay: fc.integer({ min: 1, max: 5000 }),
      }),
    ),
    removeOnComplete: fc.oneof(
      fc.boolean(),
      fc.integer({ min: 1, max: 100 }),
      fc.record({
        age: fc.integer({ min: 1, max: 100 }),
        count: fc.integer({ min: 1, max: 100 }),
      }),
    ),
    removeOnFail: fc.oneof(fc.boolean(), fc.integer({ min: 1, max: 100 })),
    stackTraceLimit: fc.integer({ min: 1, max: 20 }),
  },
  { requiredKeys: [] },
);

const dataArb = fc.oneof(
  fc.constantFrom(null, 0, false, '', 'text', 42, [1, 'two']),
  fc.record({
    s: fc.string({ maxLength: 8 }),
    n: fc.oneof(
      fc.integer(),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
    ),
    b: fc.boolean(),
    z: fc.constant(null),
    list: fc.array(fc.integer(), { maxLength: 3 }),
    undef: fc.constant(undefined),
  }),
);

/** What a job in Redis is compared on. */
function shape(job: any) {
  const opts = { ...(job.opts ?? {}) };
  delete opts.jobId;
  delete opts.timestamp;
  return { name: job.name, data: job.data, opts };
}

async function makeApp(name: string, table: string, graceMs: number) {
  await createOutboxTable(table);
  return createLibApp({
    queues: [
      { name, durable: true },
      ...(name === FAST ? [{ name: REF }] : []),
    ],
    options: {
      outbox: {
        tableName: table,
        markBatchDelayMs: 1,
        relay: { enabled: false, graceMs, pollIntervalMs: 50 },
      },
    },
    listen: false,
  });
}

describe(`adversarial4: job options through the outbox are those of a plain add() (${LIB_QUEUE})`, () => {
  let fastApp: INestApplication;
  let relayApp: INestApplication;
  let fastQ: TransactionAwareQueue<any>;
  let relayQ: TransactionAwareQueue<any>;
  let refBull: Queue;
  let fastBull: Queue;
  let relayBull: Queue;

  beforeAll(async () => {
    fastApp = await makeApp(FAST, TABLE_FAST, 60_000);
    relayApp = await makeApp(RELAYED, TABLE_RELAY, 0);
    fastQ = fastApp.get(getTransactionAwareQueueToken(FAST));
    relayQ = relayApp.get(getTransactionAwareQueueToken(RELAYED));
    refBull = bullQueue(fastApp, REF);
    fastBull = bullQueue(fastApp, FAST);
    relayBull = bullQueue(relayApp, RELAYED);
  });

  afterAll(async () => {
    await closeLibApp(relayApp, [RELAYED]);
    await closeLibApp(fastApp, [FAST, REF]);
  });

  it('fast path, relay, deferred plain and plain add() put the same job in Redis', async () => {
    const fastHost = fastApp.get(TransactionHost);
    const relayHost = relayApp.get(TransactionHost);
    const outbox = relayApp.get(TransactionalOutbox);
    await fc.assert(
      fc.asyncProperty(
        optionArb,
        dataArb,
        fc.constantFrom('job', 'other'),
        async (opts, data, name) => {
          const tag = uniqueName('o');
          const ref = await refBull.add(name, data, {
            ...opts,
            jobId: `ref-${tag}`,
          } as any);
          const fastId = await fastHost.withTransaction(() =>
            fastQ.add(name, data, { ...opts } as any),
          );
          const relayId = await relayHost.withTransaction(() =>
            relayQ.add(name, data, { ...opts } as any),
          );
          await outbox.relayOnce();
          const expected = shape(await findJob(refBull, String(ref.id)));
          const viaFast = await findJob(fastBull, fastId);
          const viaRelay = await findJob(relayBull, relayId);
          expect({
            fast: viaFast && shape(viaFast),
            relay: viaRelay && shape(viaRelay),
          }).toEqual({ fast: expected, relay: expected });
        },
      ),
      { numRuns: 40 },
    );
  }, 50_000);

  it('a job added with undefined data has the same data ({} on BullMQ, as a plain add) whether relayed or not', async () => {
    const fastHost = fastApp.get(TransactionHost);
    const relayHost = relayApp.get(TransactionHost);
    const ref = await refBull.add('job', undefined as any, {
      jobId: uniqueName('ref-undef'),
    });
    const fastId = await fastHost.withTransaction(() =>
      fastQ.add('job', undefined),
    );
    const relayId = await relayHost.withTransaction(() =>
      relayQ.add('job', undefined),
    );
    expect(await relayApp.get(TransactionalOutbox).relayOnce()).toBe(1);
    const expected = (await findJob(refBull, String(ref.id)))!.data;
    expect({
      fast: (await findJob(fastBull, fastId))!.data,
      relay: (await findJob(relayBull, relayId))!.data,
    }).toEqual({ fast: expected, relay: expected });
  });

  it('a relayed row with null data neither fails the relay nor holds the other rows back', async () => {
    const relayHost = relayApp.get(TransactionHost);
    const outbox = relayApp.get(TransactionalOutbox);
    const nullId = await relayHost.withTransaction(() =>
      relayQ.add('job', null),
    );
    const otherId = await relayHost.withTransaction(() =>
      relayQ.add('job', { n: 1 }),
    );
    const relayed = await outbox.relayOnce().catch((error) => String(error));
    expect({
      relayed,
      nullJob: (await findJob(relayBull, nullId)) !== null,
      otherJob: (await findJob(relayBull, otherId)) !== null,
    }).toEqual({ relayed: 2, nullJob: true, otherJob: true });
  });
});
