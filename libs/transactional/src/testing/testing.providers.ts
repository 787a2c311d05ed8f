import {
  Injectable,
  OnApplicationShutdown,
  OnModuleInit,
  Provider,
} from '@nestjs/common';
import { ModulesContainer } from '@nestjs/core';
import { runnerRegistry } from '../runner-registry';
import { TransactionHost } from '../transaction-host';
import { TransactionRunner } from '../transaction-runner';
import {
  DEFAULT_CONNECTION_NAME,
  getTransactionAwareFlowProducerToken,
  getTransactionAwareQueueToken,
  getTransactionHostToken,
} from '../transactional.constants';
import { InMemoryTransactionDriver } from './in-memory-transaction-driver';
import { inMemoryQueue } from './in-memory-queue';
import { inMemoryFlowProducer } from './in-memory-flow-producer';
import { TransactionAwareFlowProducer } from '../bullmq/transaction-aware-flow-producer';
import { JobRecorder } from './job-recorder';
import { RecordingTransactionAwareQueue } from './recording-transaction-aware-queue';
import type {
  TestingQueueOptions,
  TransactionalTestingModuleOptions,
} from './testing.interfaces';
import { TransactionalTestingKit } from './transactional-testing-kit';

const TESTING_STATE = Symbol('transactional:testing-state');

interface TestingState {
  recorder: JobRecorder;
  drivers: Map<string, InMemoryTransactionDriver>;
}

@Injectable()
class TestingLifecycle implements OnModuleInit, OnApplicationShutdown {
  constructor(
    private readonly runner: TransactionRunner,
    private readonly modules: ModulesContainer,
  ) {}

  onModuleInit() {
    runnerRegistry.bindApplication(this.modules, this.runner);
    this.runner.activate();
  }

  onApplicationShutdown() {
    this.runner.deactivate();
  }
}

/** Providers of `TransactionalTestingModule.forRoot()`. Internal. */
export function testingProviders(
  options: TransactionalTestingModuleOptions,
  queues: TestingQueueOptions[],
  connectionNames: string[],
): Provider[] {
  return [
    {
      provide: TESTING_STATE,
      // NOTE: state is built per compiled module, so a reused forRoot() result starts empty.
      useFactory: (): TestingState => ({
        recorder: new JobRecorder(
          new Map(
            queues.map((q) => [q.name, q.mode ?? options.mode ?? 'capture']),
          ),
        ),
        drivers: new Map(
          connectionNames.map((name) => [
            name,
            new InMemoryTransactionDriver(name, options.entityManager),
          ]),
        ),
      }),
    },
    {
      provide: TransactionalTestingKit,
      inject: [TESTING_STATE],
      useFactory: (state: TestingState) =>
        new TransactionalTestingKit(state.recorder, state.drivers),
    },
    {
      provide: TransactionRunner,
      inject: [TESTING_STATE],
      useFactory: (state: TestingState) =>
        new TransactionRunner(state.drivers, options.afterCommitTimeoutMs),
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
    TestingLifecycle,
    ...queues.map((queue) => ({
      provide: getTransactionAwareQueueToken(queue.name),
      inject: [TESTING_STATE, TransactionRunner],
      useFactory: (state: TestingState, runner: TransactionRunner) =>
        new RecordingTransactionAwareQueue(
          { ...queue, adapter: queue.adapter ?? options.adapter },
          inMemoryQueue(
            queue.name,
            state.recorder,
            queue.adapter ?? options.adapter,
            options.plainQueueInTransaction,
          ),
          new TransactionHost(
            runner,
            queue.connectionName ?? DEFAULT_CONNECTION_NAME,
          ),
          state.recorder,
          options.outboxDialect ?? 'postgres',
        ),
    })),
    ...(options.flowProducers ?? []).map((name) => ({
      provide: getTransactionAwareFlowProducerToken(name),
      inject: [TESTING_STATE],
      useFactory: (state: TestingState) =>
        new TransactionAwareFlowProducer({ name }, () =>
          inMemoryFlowProducer(name, state.recorder),
        ),
    })),
  ];
}
