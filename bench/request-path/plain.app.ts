import { InjectQueue } from '@nestjs/bull';
import {
  CallHandler,
  Controller,
  Injectable,
  NestInterceptor,
  Post,
  Type,
  UseInterceptors,
} from '@nestjs/common';
import type { Queue } from 'bull';
import { DataSource } from 'typeorm';
import { BenchRow, JobData, PAYLOAD, insertedId } from './bench-row.entity';

// NOTE: nothing here may load the library, nestjs-cls or a peer: loading nestjs-cls enables
// AsyncLocalStorage for the whole process, part of the cost the other modes are measured with.

/** After-COMMIT-to-enqueued times (ms) of b2's `POST /probe`, while the orchestrator has the probe on. */
export const plainProbe = { on: false, ms: [] as number[] };

/** b2i's interceptor: does nothing but hand the call on, as the least any interceptor does. */
@Injectable()
class PassThroughInterceptor implements NestInterceptor {
  intercept(_context: unknown, next: CallHandler) {
    return next.handle();
  }
}

/** The hand-written modes: hello, b1, b2, b2i, b3. */
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
        case 'b2':
        case 'b2i': {
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

    /** b2 with a stopwatch: from the transaction's end (COMMIT, release) to Redis having taken the job. */
    @Post('probe')
    async handleWithStopwatch() {
      const id = await this.insert();
      const committedAt = performance.now();
      await this.queue.add({ id });
      if (plainProbe.on) plainProbe.ms.push(performance.now() - committedAt);
      return { id };
    }

    private insert(): Promise<number> {
      return this.dataSource.transaction(async (manager) =>
        insertedId(
          await manager.insert(BenchRow, { label: mode, payload: PAYLOAD }),
        ),
      );
    }
  }
  if (mode === 'b2i') {
    const method = 'benchHandler';
    UseInterceptors(PassThroughInterceptor)(
      PlainController.prototype,
      method,
      Object.getOwnPropertyDescriptor(PlainController.prototype, method)!,
    );
  }
  return PlainController;
}
