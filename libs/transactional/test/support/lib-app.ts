import { BullModule, getQueueToken } from '@nestjs/bull';
import { INestApplication, Provider, Type } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import type { Queue } from 'bull';
import {
  TransactionAwareQueueOptions,
  TransactionalModule,
  TransactionalModuleOptions,
} from '@app/transactional';
import { Order } from './order.entity';
import { testDatabaseUrl, testRedisUrl } from './env';

/** What a spec's Nest application is built from. */
export interface LibAppSpec {
  controllers?: Type<unknown>[];
  providers?: Provider[];
  queues: TransactionAwareQueueOptions[];
  options?: TransactionalModuleOptions;
  entities?: Type<unknown>[];
  poolSize?: number;
}

/** Boots (and listens on a free loopback port) a Nest app with TypeORM (real Postgres), Bull (real Redis) and the library. */
export async function createLibApp(
  spec: LibAppSpec,
): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      TypeOrmModule.forRoot({
        type: 'postgres',
        url: testDatabaseUrl(),
        entities: [Order, ...(spec.entities ?? [])],
        synchronize: true,
        extra: { max: spec.poolSize ?? 20 },
      }),
      BullModule.forRoot({ url: testRedisUrl() }),
      BullModule.registerQueue(...spec.queues.map((q) => ({ name: q.name }))),
      TransactionalModule.forRoot(spec.options ?? {}),
      TransactionalModule.registerQueue(...spec.queues),
    ],
    controllers: spec.controllers ?? [],
    providers: spec.providers ?? [],
  }).compile();
  const app = moduleRef.createNestApplication({
    logger: process.env.TEST_LOGS ? undefined : false,
  });
  await app.listen(0, '127.0.0.1');
  return app;
}

/** Removes every trace of the app's queues from Redis and closes the app. */
export async function closeLibApp(
  app: INestApplication | undefined,
  queueNames: string[],
) {
  if (!app) return;
  for (const name of queueNames) {
    const queue = app.get<Queue>(getQueueToken(name), { strict: false });
    await queue.obliterate({ force: true }).catch(() => undefined);
  }
  await app.close();
}

/** Waits until `predicate` holds, polling; fails with `what` after `timeoutMs`. */
export async function waitFor(
  predicate: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
