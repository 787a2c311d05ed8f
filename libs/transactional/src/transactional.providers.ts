import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
  OnApplicationShutdown,
  OnModuleInit,
  Optional,
  Provider,
} from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import { getDataSourceToken } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { resolveOutboxOptions } from './outbox/outbox.options';
import { TransactionalOutbox } from './outbox/transactional-outbox';
import { plainQueueDetector } from './plain-queue-detector';
import { TransactionalMetrics } from './observability/transactional-metrics';
import { QueueRegistry } from './queue-registry';
import { runnerRegistry } from './runner-registry';
import { TransactionHost } from './transaction-host';
import { TransactionRunner } from './transaction-runner';
import { TypeOrmTransactionDriver } from './typeorm-transaction-driver';
import {
  DEFAULT_CONNECTION_NAME,
  TRANSACTIONAL_MODULE_OPTIONS,
  getTransactionHostToken,
} from './transactional.constants';
import type { TransactionalModuleOptions } from './transactional.interfaces';

/** Longest a shutdown waits for transactions in progress and their after-commit work, by default. */
const SHUTDOWN_DRAIN_MS = 10_000;

/**
 * Binds the runner to the application's instances and activates the detector; on shutdown
 * drains the transactions in progress (the runner keeps working meanwhile), stops the relays,
 * and only then deactivates the runner.
 */
@Injectable()
export class TransactionalLifecycle
  implements
    OnModuleInit,
    OnApplicationBootstrap,
    BeforeApplicationShutdown,
    OnApplicationShutdown
{
  private readonly logger = new Logger('Transactional');

  constructor(
    private readonly runner: TransactionRunner,
    private readonly modules: ModulesContainer,
    @Inject(TRANSACTIONAL_MODULE_OPTIONS)
    private readonly options: TransactionalModuleOptions,
    @Optional() private readonly outbox?: TransactionalOutbox,
  ) {}

  onModuleInit() {
    // NOTE: TransactionalModule is global, so Nest runs this before the other modules' hooks.
    runnerRegistry.bindApplication(this.modules, this.runner);
    this.runner.plainQueuePolicy =
      this.options.plainQueueInTransaction ?? 'warn';
    this.runner.activate();
    plainQueueDetector.install(this.runner.plainQueuePolicy);
  }

  onApplicationBootstrap() {
    this.outbox?.start();
  }

  async beforeApplicationShutdown() {
    const left = await this.runner.drain(
      this.options.shutdownTimeoutMs ?? SHUTDOWN_DRAIN_MS,
    );
    if (left > 0)
      this.logger.warn(
        `${left} transaction(s) or after-commit step(s) still running at shutdown`,
      );
    await this.outbox?.stop();
  }

  // NOTE: not onModuleDestroy: Nest calls it before beforeApplicationShutdown, and work in
  // flight (or started by the app while it drains) would fail with "not initialised".
  onApplicationShutdown() {
    this.runner.deactivate();
    plainQueueDetector.uninstall(
      this.options.plainQueueInTransaction ?? 'warn',
    );
  }
}

/** The providers of `forRoot` / `forRootAsync` for the given connection names. */
export function coreProviders(connectionNames: string[]): Provider[] {
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
              new TypeOrmTransactionDriver(
                dataSources[i],
                name,
                options.acquireTimeoutMs,
                options.coalesceRoundTrips,
              ),
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
    { provide: QueueRegistry, useValue: new QueueRegistry() },
    {
      provide: TransactionalOutbox,
      inject: [TRANSACTIONAL_MODULE_OPTIONS, TransactionRunner, QueueRegistry],
      useFactory: (
        options: TransactionalModuleOptions,
        runner: TransactionRunner,
        registry: QueueRegistry,
      ) =>
        options.outbox
          ? new TransactionalOutbox(
              resolveOutboxOptions(options.outbox),
              (name) => runner.driver(name).manager,
              registry,
            )
          : undefined,
    },
    TransactionalMetrics,
    TransactionalLifecycle,
  ];
}
