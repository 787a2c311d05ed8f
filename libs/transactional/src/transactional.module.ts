import {
  DynamicModule,
  Global,
  Injectable,
  InjectionToken,
  Module,
  Provider,
} from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { optionalPeer } from './adapters/optional-peers';
import type { TransactionAwareFlowProducerOptions } from './bullmq/bullmq.interfaces';
import { TransactionAwareFlowProducer } from './bullmq/transaction-aware-flow-producer';
import { ClsModule, ClsService, ClsServiceManager } from 'nestjs-cls';
import { TransactionalError } from './errors/transactional.error';
import { TransactionalOutbox } from './outbox/transactional-outbox';
import { TransactionalMetrics } from './observability/transactional-metrics';
import { QueueRegistry } from './queue-registry';
import { coreProviders } from './transactional.providers';
import { TransactionAwareQueue } from './transaction-aware-queue';
import { TransactionHost } from './transaction-host';
import { TransactionRunner } from './transaction-runner';
import {
  DEFAULT_CONNECTION_NAME,
  TRANSACTIONAL_MODULE_OPTIONS,
  getTransactionAwareFlowProducerToken,
  getTransactionAwareQueueToken,
  getTransactionHostToken,
} from './transactional.constants';
import type {
  JobDiverter,
  TransactionAwareQueueOptions,
  TransactionalModuleAsyncOptions,
  TransactionalModuleOptions,
} from './transactional.interfaces';

@Injectable()
class QueueResolver {
  constructor(private readonly moduleRef: ModuleRef) {}

  queue(name: string) {
    try {
      // NOTE: @nestjs/bull and @nestjs/bullmq name a queue's provider alike (BullQueue_<name>).
      return this.moduleRef.get(`BullQueue_${name}`, { strict: false });
    } catch {
      const what = optionalPeer('@nestjs/bull') ? 'Bull' : 'BullMQ';
      throw new TransactionalError(
        `TransactionalModule.registerQueue({ name: '${name}' }) found no ${what} queue ` +
          `"${name}". Register it with BullModule.registerQueue({ name: '${name}' }).`,
      );
    }
  }

  diverter(queueName: string, token: InjectionToken): JobDiverter {
    let diverter: JobDiverter | undefined;
    try {
      diverter = this.moduleRef.get(token, { strict: false });
    } catch {
      // NOTE: reported below, with the queue's name.
    }
    if (typeof diverter?.divert !== 'function') {
      throw new TransactionalError(
        `TransactionalModule.registerQueue({ name: '${queueName}', diverter }) found no ` +
          `provider ${String(typeof token === 'function' ? token.name : token)} with a ` +
          'divert(jobs) method. Provide it in a module this one can reach.',
      );
    }
    return diverter;
  }

  flowProducer(name: string) {
    try {
      return this.moduleRef.get(`BullFlowProducer_${name}`, { strict: false });
    } catch {
      throw new TransactionalError(
        `TransactionalModule.registerFlowProducer({ name: '${name}' }) found no BullMQ flow ` +
          `producer "${name}". Register it with BullModule.registerFlowProducer({ name: ` +
          `'${name}' }) from @nestjs/bullmq.`,
      );
    }
  }
}

function coreModule(
  connectionNames: string[] = [DEFAULT_CONNECTION_NAME],
  registerClsModule = false,
  optionsProvider: Provider,
  imports: any[] = [],
): DynamicModule {
  const names = connectionNames.includes(DEFAULT_CONNECTION_NAME)
    ? connectionNames
    : [DEFAULT_CONNECTION_NAME, ...connectionNames];
  return {
    module: TransactionalModule,
    global: true,
    imports: [
      ...imports,
      ...(registerClsModule ? [ClsModule.forRoot({ global: true })] : []),
    ],
    providers: [
      optionsProvider,
      ...coreProviders(names),
      // NOTE: the same ClsService nestjs-cls injects, without ClsModule's global enhancers.
      ...(registerClsModule
        ? []
        : [
            {
              provide: ClsService,
              useValue: ClsServiceManager.getClsService(),
            },
          ]),
    ],
    exports: [
      TransactionRunner,
      TransactionHost,
      QueueRegistry,
      TransactionalOutbox,
      TransactionalMetrics,
      ...(registerClsModule ? [] : [ClsService]),
      ...names.map(getTransactionHostToken),
    ],
  };
}

/** The longest delay Node's timers take (a longer one fires at once). */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Refuses, with a message that names the option, a time limit that is not a positive number of
 * ms (a negative or NaN one would make every wait end at once, or never).
 */
function checkModuleOptions(
  options: TransactionalModuleOptions,
): TransactionalModuleOptions {
  for (const name of [
    'acquireTimeoutMs',
    'afterCommitTimeoutMs',
    'shutdownTimeoutMs',
  ] as const) {
    const value = options[name];
    if (
      value !== undefined &&
      !(typeof value === 'number' && value > 0 && value <= MAX_TIMER_MS)
    ) {
      throw new Error(
        `TransactionalModule option ${name} must be a positive number of ms (at most ${MAX_TIMER_MS}), got ${String(value)}.`,
      );
    }
  }
  return options;
}

/**
 * Sets up transaction scopes in CLS for TypeORM DataSources (`forRoot` / `forRootAsync`, once,
 * in the application module) and makes Bull queues transaction-aware (`registerQueue`, in any
 * module, next to `BullModule.registerQueue`).
 */
@Global()
@Module({})
export class TransactionalModule {
  /** Registers the transaction machinery with static options. */
  static forRoot(options: TransactionalModuleOptions = {}): DynamicModule {
    return coreModule(
      options.connectionNames,
      options.registerClsModule === true,
      {
        provide: TRANSACTIONAL_MODULE_OPTIONS,
        useValue: checkModuleOptions(options),
      },
    );
  }

  /** Registers the transaction machinery with options built by a factory. */
  static forRootAsync(
    options: TransactionalModuleAsyncOptions & { connectionNames?: string[] },
  ): DynamicModule {
    return coreModule(
      options.connectionNames,
      options.registerClsModule === true,
      {
        provide: TRANSACTIONAL_MODULE_OPTIONS,
        inject: options.inject ?? [],
        useFactory: async (...args: any[]) =>
          checkModuleOptions(await options.useFactory(...args)),
      },
      options.imports,
    );
  }

  /**
   * Provides a `TransactionAwareQueue` for each named Bull queue, injectable with
   * `@InjectTransactionAwareQueue(name)`. The Bull queue itself is registered as usual with
   * `BullModule.registerQueue({ name })`.
   */
  static registerQueue(
    ...queues: TransactionAwareQueueOptions[]
  ): DynamicModule {
    const providers: Provider[] = queues.map((options) => ({
      provide: getTransactionAwareQueueToken(options.name),
      inject: [
        QueueResolver,
        QueueRegistry,
        TransactionRunner,
        { token: TransactionalOutbox, optional: true },
      ],
      useFactory: (
        resolver: QueueResolver,
        registry: QueueRegistry,
        runner: TransactionRunner,
        outbox?: TransactionalOutbox,
      ) => {
        if (options.durable && !outbox) {
          throw new TransactionalError(
            `Queue "${options.name}" is registered with durable: true, but no outbox is ` +
              `configured. Pass TransactionalModule.forRoot({ outbox: {} }) and add ` +
              `createOutboxMigration() to your migrations.`,
          );
        }
        const queue = new TransactionAwareQueue(
          options,
          () => resolver.queue(options.name),
          outbox?.forConnection(
            options.connectionName ?? DEFAULT_CONNECTION_NAME,
          ),
          options.diverter === undefined
            ? undefined
            : () => resolver.diverter(options.name, options.diverter!),
          runner,
        );
        registry.add(queue);
        return queue;
      },
    }));
    return {
      module: TransactionalModule,
      providers: [QueueResolver, ...providers],
      exports: providers.map((provider: any) => provider.provide),
    };
  }

  /**
   * Provides a `TransactionAwareFlowProducer` for each named BullMQ flow producer, injectable
   * with `@InjectTransactionAwareFlowProducer(name)`. The flow producer itself is registered as
   * usual with `BullModule.registerFlowProducer({ name })` from `@nestjs/bullmq`. Durable mode
   * is not supported for flows (refused at registration).
   */
  static registerFlowProducer(
    ...producers: TransactionAwareFlowProducerOptions[]
  ): DynamicModule {
    const providers: Provider[] = producers.map((options) => ({
      provide: getTransactionAwareFlowProducerToken(options.name),
      inject: [QueueResolver, TransactionRunner],
      useFactory: (resolver: QueueResolver, runner: TransactionRunner) =>
        new TransactionAwareFlowProducer(
          options,
          () => resolver.flowProducer(options.name),
          runner,
        ),
    }));
    return {
      module: TransactionalModule,
      providers: [QueueResolver, ...providers],
      exports: providers.map((provider: any) => provider.provide),
    };
  }
}
