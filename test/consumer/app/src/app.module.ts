import { DynamicModule, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import {
  createOutboxMigration,
  TransactionalModule,
} from 'nestjs-transactional-jobs';
import { Order } from './order.entity.js';
import { OrdersController } from './orders.controller.js';
import { OrdersService } from './orders.service.js';
import { DURABLE_QUEUE, ORDERS_QUEUE, queueModules } from './queue.js';

/** The outbox table of durable mode, created by the user's migration list. */
export class CreateOutbox1764100000000 extends createOutboxMigration() {}

/** Where the app's state lives. */
export interface ConsumerSettings {
  databaseUrl: string;
  redisUrl: string;
  /** Redis key prefix of the queues: keeps parallel runs apart. */
  prefix: string;
}

/** The consumer app: TypeORM on Postgres, the queues, and the library. */
@Module({})
export class AppModule {
  static forRoot(settings: ConsumerSettings): DynamicModule {
    return {
      module: AppModule,
      imports: [
        TypeOrmModule.forRoot({
          type: 'postgres',
          url: settings.databaseUrl,
          entities: [Order],
          migrations: [CreateOutbox1764100000000],
          migrationsRun: true,
          synchronize: true,
        }),
        ...queueModules(settings.redisUrl, settings.prefix),
        TransactionalModule.forRoot({
          plainQueueInTransaction: 'throw',
          outbox: { relay: { pollIntervalMs: 200, graceMs: 1000 } },
        }),
        TransactionalModule.registerQueue(
          { name: ORDERS_QUEUE },
          { name: DURABLE_QUEUE, durable: true },
        ),
      ],
      controllers: [OrdersController],
      providers: [OrdersService],
    };
  }
}
