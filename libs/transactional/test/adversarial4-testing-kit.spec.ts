import { Injectable } from '@nestjs/common';
import { Test, TestingModule } from '@nestjs/testing';
import type { Queue } from 'bullmq';
import {
  InjectTransactionAwareQueue,
  Transactional,
  TransactionalError,
  TransactionAwareQueue,
} from '../src';
import {
  TransactionalTestingKit,
  TransactionalTestingModule,
} from '../src/testing';

/**
 * adversarial4: the testing kit must match production (README "Testing kit": "the same
 * tokens, built from the real runner ... so commit, rollback and savepoint semantics are
 * production's"; BullMQ: "the queues follow BullMQ's rules"). In production, a BullMQ
 * TransactionAwareQueue refuses at add(), inside the transaction, every option BullMQ's
 * Job.validateOptions refuses (README "Queues": a float or too high priority, a backoff jitter
 * outside 0-1, deduplication without an id): the add() rejects with a TransactionalError and
 * the transaction rolls back. Under the kit the same code resolves and the job is "enqueued",
 * so a unit test passes for code that fails in production.
 */
@Injectable()
class Labels {
  constructor(
    @InjectTransactionAwareQueue('labels')
    readonly labels: TransactionAwareQueue<{ order: string }, Queue>,
  ) {}

  @Transactional()
  async print(order: string, opts: Record<string, unknown>) {
    return this.labels.add('print', { order }, opts as any);
  }
}

const REFUSED_BY_BULLMQ: [string, Record<string, unknown>][] = [
  ['a float priority', { priority: 1.5 }],
  ['a priority above BullMQ’s limit', { priority: 2_097_153 }],
  [
    'a backoff jitter above 1',
    { backoff: { type: 'fixed', delay: 1, jitter: 3 } },
  ],
  ['deduplication without an id', { deduplication: { ttl: 1000 } }],
];

describe('adversarial4: testing kit (bullmq) against BullMQ option rules production enforces', () => {
  let moduleRef: TestingModule;
  let kit: TransactionalTestingKit;
  let service: Labels;

  beforeEach(async () => {
    moduleRef = await Test.createTestingModule({
      imports: [
        TransactionalTestingModule.forRoot({
          adapter: 'bullmq',
          queues: ['labels'],
        }),
      ],
      providers: [Labels],
    }).compile();
    await moduleRef.init();
    kit = moduleRef.get(TransactionalTestingKit);
    service = moduleRef.get(Labels);
  });

  afterEach(() => moduleRef.close());

  it.each(REFUSED_BY_BULLMQ)(
    '%s: add() rejects with a TransactionalError and rolls back, as in production',
    async (_what, opts) => {
      const outcome = await service.print('o-1', opts).then(
        () => 'resolved',
        (error: unknown) =>
          error instanceof TransactionalError ? 'TransactionalError' : error,
      );
      expect({
        outcome,
        jobs: kit.jobs('labels').length,
        statements: kit.statements(),
      }).toEqual({
        outcome: 'TransactionalError',
        jobs: 0,
        statements: ['BEGIN', 'ROLLBACK'],
      });
    },
  );
});
