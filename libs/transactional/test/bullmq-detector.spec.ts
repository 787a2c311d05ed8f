import { INestApplication, Injectable } from '@nestjs/common';
import { InjectQueue } from '@nestjs/bullmq';
import type { Queue } from 'bullmq';
import {
  InjectTransactionAwareQueue,
  PlainQueueInTransactionError,
  PlainQueuePolicy,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { CapturingLogger } from './support/capturing-logger';
import { Order } from './support/order.entity';
import { uniqueName } from './support/env';
import { closeLibApp, createLibApp } from './support/lib-app';
import { describeBullMQOnly } from './support/queue-kind';

const PLAIN = uniqueName('mq-detector-plain');
const AWARE = uniqueName('mq-detector-aware');

@Injectable()
class Producer {
  constructor(
    readonly host: TransactionHost,
    @InjectQueue(PLAIN) readonly plain: Queue,
    @InjectTransactionAwareQueue(AWARE)
    readonly aware: TransactionAwareQueue<unknown, Queue>,
  ) {}

  /** Saves a row labelled `label`, then runs `fn`, in one transaction. */
  @Transactional()
  async inTransaction<T>(label: string, fn: () => Promise<T>): Promise<T> {
    await this.host.getRepository(Order).save({ label });
    return fn();
  }
}

const warning = (method: string) =>
  `BullMQ queue "${PLAIN}".${method}() was called inside an active transaction: a worker ` +
  `may run the job before the transaction commits (and not find its rows), or after it ` +
  `rolls back. Inject it with @InjectTransactionAwareQueue('${PLAIN}') instead, which ` +
  `enqueues after the outermost commit.`;

describeBullMQOnly(
  "when a plain BullMQ queue's add() runs inside a transaction",
  () => {
    let app: INestApplication;
    let producer: Producer;
    const logger = new CapturingLogger();

    async function start(policy: PlainQueuePolicy) {
      app = await createLibApp({
        providers: [Producer],
        queues: [{ name: PLAIN }, { name: AWARE }],
        options: { plainQueueInTransaction: policy },
        logger,
        listen: false,
      });
      producer = app.get(Producer);
      logger.clear();
    }

    afterEach(() => closeLibApp(app, [PLAIN, AWARE]));

    const warnings = () =>
      logger.lines('warn', 'Transactional').map((line) => line.message);

    it("should warn naming the queue and the method, and still add the job (policy 'warn')", async () => {
      await start('warn');
      const job = await producer.inTransaction(uniqueName('warn'), () =>
        producer.plain.add('x', { n: 1 }),
      );
      const [bulk] = await producer.inTransaction(uniqueName('warn'), () =>
        producer.plain.addBulk([{ name: 'y', data: { n: 2 } }]),
      );
      expect(warnings()).toEqual([warning('add'), warning('addBulk')]);
      expect(await producer.plain.getJob(job.id!)).toBeDefined();
      expect(await producer.plain.getJob(bulk.id!)).toBeDefined();
    });

    it("should reject add() and addBulk() and roll back (policy 'throw')", async () => {
      await start('throw');
      const before = await producer.plain.getJobCounts('waiting');
      for (const call of [
        (): Promise<unknown> => producer.plain.add('x', {}),
        () => producer.plain.addBulk([{ name: 'y', data: {} }]),
      ]) {
        const label = uniqueName('throw');
        await expect(producer.inTransaction(label, call)).rejects.toThrow(
          PlainQueueInTransactionError,
        );
        expect(
          await app
            .get(TransactionHost)
            .manager.getRepository(Order)
            .countBy({ label }),
        ).toBe(0);
      }
      expect(await producer.plain.getJobCounts('waiting')).toEqual(before);
    });

    it('should not report the add() of a TransactionAwareQueue, nor a plain add() outside a transaction', async () => {
      await start('throw');
      const id = await producer.inTransaction(uniqueName('aware'), () =>
        producer.aware.add('z', {}),
      );
      await producer.plain.add('outside', {});
      expect(warnings()).toEqual([]);
      expect(
        await app.get<Queue>(`BullQueue_${AWARE}`).getJob(id),
      ).toBeDefined();
    });
  },
);
