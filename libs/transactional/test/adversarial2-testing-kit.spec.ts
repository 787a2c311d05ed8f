import { Injectable } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import {
  InjectTransactionAwareQueue,
  Transactional,
  TransactionAwareQueue,
} from '../src';
import {
  TransactionalTestingKit,
  TransactionalTestingModule,
} from '../src/testing';

@Injectable()
class Billing {
  constructor(
    @InjectTransactionAwareQueue('invoices')
    readonly invoices: TransactionAwareQueue<any, any>,
  ) {}

  @Transactional()
  async bill(data: unknown, opts?: Record<string, unknown>) {
    return this.invoices.add('invoice', data, opts as any);
  }
}

/**
 * Production (Bull and BullMQ) refuses these jobs inside the transaction (the queue library's
 * JSON.stringify would throw on a BigInt or a cycle after the commit); the kit, whose semantics
 * the README says are production's, must not show them as enqueued. (BullMQ's option rules,
 * e.g. a float priority, are checked with the real queue's Job class, which the kit's
 * stand-in does not have: not covered here.)
 */
describe.each(['bull', 'bullmq'] as const)(
  'adversarial2: testing kit (%s) and jobs production cannot enqueue',
  (adapter) => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const cases: [string, unknown, Record<string, unknown>][] = [
      ['a BigInt in the data', { amount: 10n }, {}],
      ['cyclic data', cyclic, {}],
    ];

    it.each(cases)(
      'should not report as enqueued a committed job with %s',
      async (_what, data, opts) => {
        const moduleRef = await Test.createTestingModule({
          imports: [
            TransactionalTestingModule.forRoot({
              adapter,
              queues: ['invoices'],
            }),
          ],
          providers: [Billing],
        }).compile();
        await moduleRef.init();
        try {
          const kit = moduleRef.get(TransactionalTestingKit);
          const outcome = await moduleRef
            .get(Billing)
            .bill(data, opts)
            .then(
              () => 'resolved',
              () => 'rejected',
            );
          expect({
            outcome,
            enqueued: outcome === 'resolved' ? kit.jobs('invoices').length : 0,
          }).toEqual({ outcome, enqueued: 0 });
        } finally {
          await moduleRef.close();
        }
      },
    );
  },
);
