import { InjectQueue } from '@nestjs/bull';
import { Controller, Post, Type } from '@nestjs/common';
import type { Queue } from 'bull';
import { DataSource } from 'typeorm';
import { BenchRow } from './bench-row.entity';

// NOTE: nothing here may import 'nestjs-transactional-jobs' or 'nestjs-cls': loading nestjs-cls
// enables AsyncLocalStorage (promise hooks) for the whole process, which is part of the cost
// being measured, so the app without the library must never load it.

/** Payload of every benchmarked job: the id of the row the request inserted. */
export type Payload = { id: number };

/** Variants A and C (and A' when served by the app with the library). */
export function handWrittenController(queueName: string): Type<unknown> {
  @Controller()
  class HandWrittenController {
    constructor(
      private readonly dataSource: DataSource,
      @InjectQueue(queueName) private readonly queue: Queue<Payload>,
    ) {}

    /** A: insert in a transaction, enqueue the job after the commit, respond. */
    @Post('a')
    async insertAndEnqueue() {
      let row!: BenchRow;
      await this.dataSource.transaction(async (manager) => {
        row = await manager.save(BenchRow, { label: 'a' });
      });
      await this.queue.add({ id: row.id });
      return { id: row.id };
    }

    /** C: insert in a transaction, no job: the floor. */
    @Post('c')
    async insertOnly() {
      let row!: BenchRow;
      await this.dataSource.transaction(async (manager) => {
        row = await manager.save(BenchRow, { label: 'c' });
      });
      return { id: row.id };
    }
  }
  return HandWrittenController;
}
