import { BullModule as Bull3Module } from '@nestjs/bull';
import { BullModule as BullMQModule } from '@nestjs/bullmq';
import { INestApplication, Injectable } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { getDataSourceToken, TypeOrmModule } from '@nestjs/typeorm';
import * as fc from 'fast-check';
import {
  InjectTransactionAwareQueue,
  InjectTransactionHost,
  Propagation,
  TransactionalModule,
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { testDataSourceOptions, testRedisUrl, uniqueName } from './support/env';
import { findJob, bullQueue, waitFor } from './support/lib-app';
import { Order } from './support/order.entity';
import { createOutboxTable } from './support/outbox-table';
import { watchProcessFailures } from './support/process-failures';
import { LIB_QUEUE } from './support/queue-kind';

/**
 * adversarial4: two DataSources, a durable queue bound to each (README "Limits": "Jobs follow
 * the transaction of the queue's connectionName"; "Durable mode": a relay per connection).
 * Random pairs of scopes (outer on one connection, inner on the other or the same one, every
 * propagation that opens or joins, either may throw): a job exists iff the transaction of its
 * queue's connection that it was added in committed (fast path, then a relay poll per
 * connection by hand), and no outbox row is left pending.
 */
const DQ = uniqueName('a4-2ds-default');
const AQ = uniqueName('a4-2ds-analytics');
const TABLE = `a4_2ds_${process.pid}`;

@Injectable()
class Hosts {
  constructor(
    readonly d: TransactionHost,
    @InjectTransactionHost('analytics') readonly a: TransactionHost,
    @InjectTransactionAwareQueue(DQ) readonly dq: TransactionAwareQueue<any>,
    @InjectTransactionAwareQueue(AQ) readonly aq: TransactionAwareQueue<any>,
  ) {}
}

const scopeArb = fc.record({
  conn: fc.constantFrom('default', 'analytics'),
  propagation: fc.constantFrom(
    Propagation.Required,
    Propagation.RequiresNew,
    Propagation.Nested,
  ),
  throws: fc.boolean(),
});

describe(`adversarial4: durable queues on two DataSources (${LIB_QUEUE})`, () => {
  const failures = watchProcessFailures();
  let app: INestApplication;
  let h: Hosts;

  beforeAll(async () => {
    await createOutboxTable(TABLE);
    const queues =
      LIB_QUEUE === 'bull'
        ? [
            Bull3Module.forRoot({ url: testRedisUrl() }),
            Bull3Module.registerQueue({ name: DQ }, { name: AQ }),
          ]
        : [
            BullMQModule.forRoot({
              connection: {
                host: new URL(testRedisUrl()).hostname,
                port: Number(new URL(testRedisUrl()).port || 6379),
              },
            }),
            BullMQModule.registerQueue({ name: DQ }, { name: AQ }),
          ];
    const moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({
          ...testDataSourceOptions(),
          entities: [Order],
          synchronize: true,
        }),
        TypeOrmModule.forRoot({
          name: 'analytics',
          ...testDataSourceOptions(),
          entities: [Order],
        }),
        ...queues,
        TransactionalModule.forRoot({
          connectionNames: ['default', 'analytics'],
          outbox: {
            tableName: TABLE,
            markBatchDelayMs: 1,
            relay: { enabled: false, graceMs: 60_000 },
          },
        }),
        TransactionalModule.registerQueue(
          { name: DQ, durable: true, whenNoTransaction: 'throw' },
          {
            name: AQ,
            connectionName: 'analytics',
            durable: true,
            whenNoTransaction: 'throw',
          },
        ),
      ],
      providers: [Hosts],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    h = app.get(Hosts);
    expect(app.get(getDataSourceToken('analytics'))).not.toBe(
      app.get(getDataSourceToken()),
    );
  });

  afterAll(async () => {
    for (const name of [DQ, AQ]) {
      await bullQueue(app, name)
        .obliterate({ force: true })
        .catch(() => undefined);
    }
    await app?.close();
    failures.dispose();
  });

  it('a job exists iff the transaction of its own connection committed', async () => {
    const outbox = app.get(TransactionalOutbox);
    await fc.assert(
      fc.asyncProperty(scopeArb, scopeArb, async (outer, inner) => {
        const host = (c: string) => (c === 'default' ? h.d : h.a);
        const queue = (c: string) => (c === 'default' ? h.dq : h.aq);
        const ids: Record<string, string | undefined> = {};
        let innerFailed = false;
        const outerRun = host(outer.conn)
          .withTransaction(
            async () => {
              ids.outer = await queue(outer.conn).add({ s: 'outer' });
              await host(inner.conn)
                .withTransaction(
                  async () => {
                    ids.inner = await queue(inner.conn).add({ s: 'inner' });
                    if (inner.throws) throw new Error('inner');
                  },
                  { propagation: inner.propagation },
                )
                .catch(() => (innerFailed = true));
              if (outer.throws) throw new Error('outer');
            },
            { propagation: outer.propagation },
          )
          .then(
            () => true,
            () => false,
          );
        const outerCommitted = await outerRun;
        expect(innerFailed).toBe(inner.throws);
        // the inner job's transaction: its own when it opened one (another connection, or
        // REQUIRES_NEW; NESTED on another connection opens a transaction too), else the outer's
        const innerOwn =
          inner.conn !== outer.conn ||
          inner.propagation === Propagation.RequiresNew;
        const innerKept = innerOwn
          ? !inner.throws
          : inner.propagation === Propagation.Nested
            ? !inner.throws && outerCommitted
            : outerCommitted; // REQUIRED joined: a caught application error does not roll back
        await outbox.relayOnce('default').catch(() => 0);
        await outbox.relayOnce('analytics').catch(() => 0);
        const exists = async (c: string, id?: string) =>
          id !== undefined &&
          (await findJob(bullQueue(app, c === 'default' ? DQ : AQ), id)) !==
            null;
        expect({
          outer: await exists(outer.conn, ids.outer),
          inner: await exists(inner.conn, ids.inner),
        }).toEqual({ outer: outerCommitted, inner: innerKept });
        await waitFor(
          async () =>
            (await outbox.stats('default')).pending === 0 &&
            (await outbox.stats('analytics')).pending === 0,
          'no pending outbox row',
          3_000,
        );
      }),
      { numRuns: 60, endOnFailure: true },
    );
  }, 50_000);

  it('no unhandled rejection or uncaught exception', () => {
    expect(failures.unhandledRejections).toEqual([]);
    expect(failures.uncaughtExceptions).toEqual([]);
  });
});
