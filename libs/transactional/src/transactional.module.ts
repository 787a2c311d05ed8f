import {
  DynamicModule,
  Global,
  Inject,
  Injectable,
  Module,
  OnModuleDestroy,
  OnModuleInit,
  Provider,
} from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { getQueueToken } from '@nestjs/bull';
import { getDataSourceToken } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import type { DataSource } from 'typeorm';
import { TransactionalError } from './errors/transactional.error';
import { plainQueueDetector } from './plain-queue-detector';
import { TransactionAwareQueue } from './transaction-aware-queue';
import { TransactionHost } from './transaction-host';
import { TransactionRunner } from './transaction-runner';
import { TypeOrmTransactionDriver } from './typeorm-transaction-driver';
import {
  DEFAULT_CONNECTION_NAME,
  TRANSACTIONAL_MODULE_OPTIONS,
  getTransactionAwareQueueToken,
  getTransactionHostToken,
} from './transactional.constants';
import type {
  TransactionAwareQueueOptions,
  TransactionalModuleAsyncOptions,
  TransactionalModuleOptions,
} from './transactional.interfaces';

@Injectable()
class TransactionalLifecycle implements OnModuleInit, OnModuleDestroy {
  constructor(
    private readonly runner: TransactionRunner,
    @Inject(TRANSACTIONAL_MODULE_OPTIONS)
    private readonly options: TransactionalModuleOptions,
  ) {}

  onModuleInit() {
    this.runner.activate();
    plainQueueDetector.install(this.options.plainQueueInTransaction ?? 'warn');
  }

  onModuleDestroy() {
    this.runner.deactivate();
    plainQueueDetector.uninstall(
      this.options.plainQueueInTransaction ?? 'warn',
    );
  }
}

@Injectable()
class QueueResolver {
  constructor(private readonly moduleRef: ModuleRef) {}

  queue(name: string) {
    try {
      return this.moduleRef.get(getQueueToken(name), { strict: false });
    } catch {
      throw new TransactionalError(
        `TransactionalModule.registerQueue({ name: '${name}' }) found no Bull queue ` +
          `"${name}". Register it with BullModule.registerQueue({ name: '${name}' }).`,
      );
    }
  }
}

function coreProviders(connectionNames: string[]): Provider[] {
  return [
    {
      provide: TransactionRunner,
      inject: [
        TRANSACTIONAL_MODULE_OPTIONS,
        ...connectionNames.map(getDataSourceToken),
      ],
      useFactory: (
        options: TransactionalModuleOptions,
        ...dataSources: DataSource[]
      ) =>
        new TransactionRunner(
          new Map(
            connectionNames.map((name, i) => [
              name,
              new TypeOrmTransactionDriver(dataSources[i]),
            ]),
          ),
          options.afterCommitTimeoutMs,
        ),
    },
    ...connectionNames.map((name) => ({
      provide: getTransactionHostToken(name),
      inject: [TransactionRunner],
      useFactory: (runner: TransactionRunner) =>
        new TransactionHost(runner, name),
    })),
    {
      provide: TransactionHost,
      useExisting: getTransactionHostToken(DEFAULT_CONNECTION_NAME),
    },
    TransactionalLifecycle,
  ];
}

function coreModule(
  connectionNames: string[] = [DEFAULT_CONNECTION_NAME],
  registerClsModule = true,
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
    providers: [optionsProvider, ...coreProviders(names)],
    exports: [
      TransactionRunner,
      TransactionHost,
      ...names.map(getTransactionHostToken),
    ],
  };
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
      options.registerClsModule !== false,
      {
        provide: TRANSACTIONAL_MODULE_OPTIONS,
        useValue: options,
      },
    );
  }

  /** Registers the transaction machinery with options built by a factory. */
  static forRootAsync(
    options: TransactionalModuleAsyncOptions & { connectionNames?: string[] },
  ): DynamicModule {
    return coreModule(
      options.connectionNames,
      options.registerClsModule !== false,
      {
        provide: TRANSACTIONAL_MODULE_OPTIONS,
        inject: options.inject ?? [],
        useFactory: options.useFactory,
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
      inject: [QueueResolver],
      useFactory: (resolver: QueueResolver) =>
        new TransactionAwareQueue(options, () => resolver.queue(options.name)),
    }));
    return {
      module: TransactionalModule,
      providers: [QueueResolver, ...providers],
      exports: providers.map((provider: any) => provider.provide),
    };
  }
}
