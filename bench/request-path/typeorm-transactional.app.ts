import { InjectQueue } from '@nestjs/bull';
import { Controller, Post, Type } from '@nestjs/common';
import { TypeOrmModule, TypeOrmModuleOptions } from '@nestjs/typeorm';
import { InjectRepository } from '@nestjs/typeorm';
import type { Queue } from 'bull';
import { DataSource, DataSourceOptions, Repository } from 'typeorm';
import {
  StorageDriver,
  Transactional,
  addTransactionalDataSource,
  initializeTransactionalContext,
  runOnTransactionCommit,
} from 'typeorm-transactional';
import { BenchRow, JobData, PAYLOAD, insertedId } from './bench-row.entity';

/**
 * p1's TypeORM module, set up as typeorm-transactional's README says: the context initialised
 * before the app, the DataSource registered with `addTransactionalDataSource`.
 */
export function typeormTransactionalImports(options: TypeOrmModuleOptions) {
  initializeTransactionalContext({
    storageDriver: StorageDriver.ASYNC_LOCAL_STORAGE,
  });
  return [
    TypeOrmModule.forRootAsync({
      useFactory: () => options,
      dataSourceFactory: async (dataSourceOptions?: DataSourceOptions) =>
        addTransactionalDataSource(new DataSource(dataSourceOptions!)),
    }),
    TypeOrmModule.forFeature([BenchRow]),
  ];
}

/** p1: the write in `@Transactional()`, the add in `runOnTransactionCommit`, awaited by the handler. */
export function typeormTransactionalController(
  queueName: string,
): Type<unknown> {
  @Controller()
  class TypeormTransactionalController {
    constructor(
      @InjectRepository(BenchRow) private readonly rows: Repository<BenchRow>,
      @InjectQueue(queueName) private readonly queue: Queue<JobData>,
    ) {}

    @Post('r')
    async benchHandler() {
      const { id, enqueued } = await this.benchWrite();
      await enqueued;
      return { id };
    }

    @Transactional()
    async benchWrite() {
      const id = insertedId(
        await this.rows.insert({ label: 'p1', payload: PAYLOAD }),
      );
      // NOTE: the callback's result is dropped by the library; the promise carries it out.
      const enqueued = new Promise((resolve, reject) =>
        runOnTransactionCommit(() => {
          this.queue.add({ id }).then(resolve, reject);
        }),
      );
      return { id, enqueued };
    }
  }
  return TypeormTransactionalController;
}
