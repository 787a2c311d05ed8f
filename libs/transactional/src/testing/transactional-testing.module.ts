import { DynamicModule, Global, Module } from '@nestjs/common';
import { ClsModule, ClsService, ClsServiceManager } from 'nestjs-cls';
import { TransactionHost } from '../transaction-host';
import { TransactionRunner } from '../transaction-runner';
import {
  DEFAULT_CONNECTION_NAME,
  getTransactionAwareFlowProducerToken,
  getTransactionAwareQueueToken,
  getTransactionHostToken,
} from '../transactional.constants';
import type {
  TestingQueueOptions,
  TransactionalTestingModuleOptions,
} from './testing.interfaces';
import { testingProviders } from './testing.providers';
import { TransactionalTestingKit } from './transactional-testing-kit';

/**
 * Stands in for `TransactionalModule` (`forRoot` and `registerQueue`) in unit tests, without
 * Postgres or Redis. It provides the same tokens, built from the real `TransactionRunner`,
 * `TransactionHost` and `TransactionAwareQueue` over an in-memory transaction driver and
 * in-memory Bull queues, so commit, rollback and savepoint semantics are production's.
 * Read and drive it through `TransactionalTestingKit`. Call `init()` on the testing module:
 * like the real module, it activates its runner on init and deactivates it on close.
 *
 * ```ts
 * const moduleRef = await Test.createTestingModule({
 *   imports: [
 *     TransactionalTestingModule.forRoot({
 *       queues: ['emails', { name: 'audit', mode: 'run' }],
 *     }),
 *   ],
 *   providers: [SignupService],
 * }).compile();
 * await moduleRef.init();
 * const kit = moduleRef.get(TransactionalTestingKit);
 * kit.process('audit', async (job) => audited.push(job.data));
 *
 * await moduleRef.get(SignupService).signUp('ann@example.com');
 * expect(kit.jobs('emails')).toMatchObject([{ name: 'welcome' }]);
 * await moduleRef.close();
 * ```
 */
@Global()
@Module({})
export class TransactionalTestingModule {
  /** Registers the in-memory transaction machinery and queues (a global module). */
  static forRoot(
    options: TransactionalTestingModuleOptions = {},
  ): DynamicModule {
    const queues: TestingQueueOptions[] = (options.queues ?? []).map((queue) =>
      typeof queue === 'string' ? { name: queue } : queue,
    );
    const names = [
      ...new Set([DEFAULT_CONNECTION_NAME, ...(options.connectionNames ?? [])]),
    ];
    return {
      module: TransactionalTestingModule,
      global: true,
      imports: options.registerClsModule
        ? [ClsModule.forRoot({ global: true })]
        : [],
      providers: [
        ...testingProviders(options, queues, names),
        ...(options.registerClsModule
          ? []
          : [
              {
                provide: ClsService,
                useValue: ClsServiceManager.getClsService(),
              },
            ]),
      ],
      exports: [
        ...(options.registerClsModule ? [] : [ClsService]),
        TransactionalTestingKit,
        TransactionRunner,
        TransactionHost,
        ...names.map(getTransactionHostToken),
        ...queues.map((queue) => getTransactionAwareQueueToken(queue.name)),
        ...(options.flowProducers ?? []).map(
          getTransactionAwareFlowProducerToken,
        ),
      ],
    };
  }
}
