import { BullModule, InjectQueue } from '@nestjs/bull';
import { Injectable, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import type { Queue } from 'bull';
import { ClsService } from 'nestjs-cls';
import {
  PlainQueueInTransactionError,
  Transactional,
  TransactionalModule,
  TransactionHost,
} from '../src';
import { testRedisUrl, uniqueName, testDataSourceOptions } from './support/env';
import { Order } from './support/order.entity';

const QUEUE = uniqueName('async-options');
const POLICY = 'transactional-spec:policy';

@Module({
  providers: [{ provide: POLICY, useValue: 'throw' }],
  exports: [POLICY],
})
class PolicyModule {}

@Injectable()
class Naive {
  constructor(
    private readonly tx: TransactionHost,
    private readonly cls: ClsService,
    @InjectQueue(QUEUE) private readonly queue: Queue,
  ) {}

  @Transactional()
  async create() {
    await this.tx.getRepository(Order).save({ label: 'async' });
    await this.queue.add({ plain: true });
  }

  /** Whether the injected ClsService sees the transaction's CLS context. */
  @Transactional()
  async clsIsActive() {
    return this.cls.isActive();
  }
}

describe('when the module is configured with forRootAsync', () => {
  it('should apply the options the factory builds, from an imported provider', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({
          ...testDataSourceOptions(),
          entities: [Order],
          synchronize: true,
        }),
        BullModule.forRoot({ url: testRedisUrl() }),
        BullModule.registerQueue({ name: QUEUE }),
        TransactionalModule.forRootAsync({
          imports: [PolicyModule],
          inject: [POLICY],
          useFactory: (policy: 'throw') => ({
            plainQueueInTransaction: policy,
          }),
        }),
      ],
      providers: [Naive],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    try {
      const naive = app.get(Naive);
      const before = await app
        .get(TransactionHost)
        .getRepository(Order)
        .count();
      await expect(naive.create()).rejects.toBeInstanceOf(
        PlainQueueInTransactionError,
      );
      expect(await app.get(TransactionHost).getRepository(Order).count()).toBe(
        before,
      );
      expect(await naive.clsIsActive()).toBe(true);
    } finally {
      await app.get<Queue>(`BullQueue_${QUEUE}`).obliterate({ force: true });
      await app.close();
    }
  });
});
