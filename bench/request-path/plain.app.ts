import { InjectQueue } from '@nestjs/bull';
import { Controller, Post, Type } from '@nestjs/common';
import type { Queue } from 'bull';
import { DataSource } from 'typeorm';
import { BenchRow, JobData, PAYLOAD, insertedId } from './bench-row.entity';

// NOTE: nothing here may load the library, nestjs-cls or a peer: loading nestjs-cls enables
// AsyncLocalStorage for the whole process, part of the cost the other modes are measured with.

/** The hand-written modes: hello, b1, b2, b3. */
export function plainController(
  mode: string,
  queueName: string,
): Type<unknown> {
  @Controller()
  class PlainController {
    constructor(
      private readonly dataSource: DataSource,
      @InjectQueue(queueName) private readonly queue: Queue<JobData>,
    ) {}

    @Post('r')
    async benchHandler() {
      switch (mode) {
        case 'hello':
          return { id: 0 };
        case 'b1':
          return { id: await this.insert() };
        case 'b2': {
          const id = await this.insert();
          await this.queue.add({ id });
          return { id };
        }
        case 'b3': {
          // NOTE: the bug the library exists for: the job may run before COMMIT, or after a rollback.
          const id = await this.dataSource.transaction(async (manager) => {
            const rowId = insertedId(
              await manager.insert(BenchRow, { label: mode, payload: PAYLOAD }),
            );
            await this.queue.add({ id: rowId });
            return rowId;
          });
          return { id };
        }
      }
      throw new Error(`no plain mode ${mode}`);
    }

    private insert(): Promise<number> {
      return this.dataSource.transaction(async (manager) =>
        insertedId(
          await manager.insert(BenchRow, { label: mode, payload: PAYLOAD }),
        ),
      );
    }
  }
  return PlainController;
}
