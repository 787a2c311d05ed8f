/**
 * The testing kit refuses the durable jobs the real outbox refuses, with the same error: the kit
 * writes no outbox rows, so without its own check a unit test would pass a job whose data
 * production cannot store (a NUL character in Postgres' jsonb, a lone UTF-16 surrogate in either
 * database's JSON column). Randomized: the same adds, in a transaction, on the real library
 * (this run's database and queue library) and on the kit (`outboxDialect` set to match).
 */
import { INestApplication } from '@nestjs/common';
import { Test, TestingModule } from '@nestjs/testing';
import * as fc from 'fast-check';
import {
  getTransactionAwareQueueToken,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { TransactionalTestingModule } from '../src/testing';
import { onMariaDb, uniqueName } from './support/env';
import { closeLibApp, createLibApp } from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';
import { LIB_QUEUE } from './support/queue-kind';

jest.setTimeout(120_000);

const DURABLE = uniqueName('kit-refuse-d');
const PLAIN = uniqueName('kit-refuse-p');
const TABLE = `tx_spec_kit_refuse_${process.pid}`;

interface Side {
  host: TransactionHost;
  durable: TransactionAwareQueue<any, any>;
  plain: TransactionAwareQueue<any, any>;
}

/** One add of a case: to which queue, with what data, and whether `opts.durable` is given. */
interface AddSpec {
  queue: 'durable' | 'plain';
  data: unknown;
  durable?: boolean;
  bulk: boolean;
}

/** Strings that hold the characters the outbox columns refuse, among ordinary ones. */
const awkwardString = fc.oneof(
  fc.string({ maxLength: 6 }),
  fc.constantFrom('\u0000', 'a\u0000b', '\ud83d', 'x\ude00', '\\u0000', '😀'),
  fc
    .array(fc.constantFrom('a', '\u0000', '\ud800', '\udfff', '\\', '😀'), {
      maxLength: 5,
    })
    .map((chars) => chars.join('')),
);

const data = fc.oneof(
  awkwardString,
  fc.dictionary(awkwardString, awkwardString, { maxKeys: 3 }),
  fc.array(fc.oneof(awkwardString, fc.integer()), { maxLength: 3 }),
  fc.constant(undefined),
);

const addSpec: fc.Arbitrary<AddSpec> = fc.record({
  queue: fc.constantFrom<'durable' | 'plain'>('durable', 'plain'),
  data,
  durable: fc.option(fc.boolean(), { nil: undefined }),
  bulk: fc.boolean(),
});

/** What each add and the transaction came to, and what messages the refusals carried. */
async function run(side: Side, adds: AddSpec[]): Promise<string[]> {
  const out: string[] = [];
  const settle = (p: Promise<unknown>) =>
    p.then(
      () => 'ok',
      (e: unknown) =>
        e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e),
    );
  out.push(
    await settle(
      side.host.withTransaction(async () => {
        for (const [i, add] of adds.entries()) {
          const queue = side[add.queue];
          const opts =
            add.durable === undefined ? {} : { durable: add.durable };
          out.push(
            await settle(
              add.bulk
                ? queue.addBulk([{ name: `j${i}`, data: add.data, opts }])
                : queue.add(`j${i}`, add.data, opts),
            ),
          );
        }
        // NOTE: the refused adds changed nothing; roll back so no job is left behind.
        throw new Error('rolled back by the spec');
      }),
    ),
  );
  return out;
}

describe(`the testing kit refuses what the ${onMariaDb ? 'MariaDB' : 'Postgres'} outbox refuses (${LIB_QUEUE})`, () => {
  let app: INestApplication;
  let real: Side;
  let moduleRef: TestingModule;
  let inKit: Side;

  beforeAll(async () => {
    await createOutboxTable(TABLE);
    app = await createLibApp({
      queues: [{ name: DURABLE, durable: true }, { name: PLAIN }],
      listen: false,
      options: { outbox: { tableName: TABLE, relay: { enabled: false } } },
    });
    real = {
      host: app.get(TransactionHost),
      durable: app.get(getTransactionAwareQueueToken(DURABLE)),
      plain: app.get(getTransactionAwareQueueToken(PLAIN)),
    };
    moduleRef = await Test.createTestingModule({
      imports: [
        TransactionalTestingModule.forRoot({
          adapter: LIB_QUEUE,
          queues: [{ name: DURABLE, durable: true }, PLAIN],
          outboxDialect: onMariaDb ? 'mysql' : 'postgres',
        }),
      ],
    }).compile();
    await moduleRef.init();
    inKit = {
      host: moduleRef.get(TransactionHost),
      durable: moduleRef.get(getTransactionAwareQueueToken(DURABLE)),
      plain: moduleRef.get(getTransactionAwareQueueToken(PLAIN)),
    };
  });

  afterAll(async () => {
    await moduleRef?.close();
    await closeLibApp(app, [DURABLE, PLAIN]);
  });

  it('a NUL character and a lone surrogate in a durable job: refused by both, with the same message', async () => {
    const adds: AddSpec[] = [
      { queue: 'durable', data: { s: 'a\u0000b' }, bulk: false },
      { queue: 'durable', data: { s: '\ud83d' }, bulk: false },
      { queue: 'plain', data: { s: 'a\u0000b' }, durable: true, bulk: true },
      { queue: 'plain', data: { s: 'a\u0000b' }, bulk: false },
    ];
    const prod = await run(real, adds);
    const kit = await run(inKit, adds);
    expect(kit).toEqual(prod);
    // what the two agree on is the outbox's rule, not two permissive sides
    const nul = onMariaDb ? /^ok$/ : /^TransactionalError: .*NUL character/;
    expect(prod).toEqual([
      expect.stringMatching(nul),
      expect.stringMatching(/^TransactionalError: .*lone UTF-16 surrogate/),
      expect.stringMatching(nul),
      'ok',
      'Error: rolled back by the spec',
    ]);
  });

  it('random adds of awkward strings to durable and plain jobs: the kit answers every add as production does', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(addSpec, { minLength: 1, maxLength: 4 }),
        async (adds) => {
          expect(await run(inKit, adds)).toEqual(await run(real, adds));
        },
      ),
      { numRuns: 60 },
    );
  });
});
