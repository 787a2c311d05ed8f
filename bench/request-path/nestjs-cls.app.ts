import { InjectQueue } from '@nestjs/bull';
import { Controller, Post, Type } from '@nestjs/common';
import { TypeOrmModule, getDataSourceToken } from '@nestjs/typeorm';
import {
  ClsPluginTransactional,
  Transactional,
  TransactionHost,
} from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import type { Queue } from 'bull';
import { ClsModule } from 'nestjs-cls';
import { BenchRow, JobData, PAYLOAD, insertedId } from './bench-row.entity';

/** p2's module, as @nestjs-cls/transactional's docs set it up (ClsModule middleware mounted). */
export function nestjsClsImports() {
  return [
    ClsModule.forRoot({
      global: true,
      middleware: { mount: true },
      plugins: [
        new ClsPluginTransactional({
          imports: [TypeOrmModule],
          adapter: new TransactionalAdapterTypeOrm({
            dataSourceToken: getDataSourceToken(),
          }),
        }),
      ],
    }),
  ];
}

/** p2: the write in `@Transactional()`, the add after it returned (committed). */
export function nestjsClsController(queueName: string): Type<unknown> {
  @Controller()
  class NestjsClsController {
    constructor(
      private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
      @InjectQueue(queueName) private readonly queue: Queue<JobData>,
    ) {}

    @Post('r')
    async benchHandler() {
      const id = await this.benchWrite();
      await this.queue.add({ id });
      return { id };
    }

    @Transactional()
    async benchWrite() {
      return insertedId(
        await this.txHost.tx.insert(BenchRow, {
          label: 'p2',
          payload: PAYLOAD,
        }),
      );
    }
  }
  return NestjsClsController;
}
