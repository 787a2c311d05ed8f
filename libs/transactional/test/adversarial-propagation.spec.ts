/**
 * Adversarial: suspending propagations (NotSupported, Never, Supports, Mandatory) mixed with
 * NESTED and REQUIRES_NEW scopes and errors caught at different levels.
 */
import { INestApplication } from '@nestjs/common';
import type { Queue } from 'bull';
import { DataSource } from 'typeorm';
import {
  NoTransactionError,
  Propagation,
  TransactionAwareQueue,
  TransactionHost,
  TransactionNotAllowedError,
  TransactionRequiredError,
  getTransactionAwareQueueToken,
} from '../src';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
  waitFor,
} from './support/lib-app';
import { Order } from './support/order.entity';
import { watchProcessFailures } from './support/process-failures';

const STRICT = uniqueName('adv-prop-strict');
const LOOSE = uniqueName('adv-prop-loose');
const failures = watchProcessFailures();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const P = Propagation;

let app: INestApplication;
let host: TransactionHost;
let strict: TransactionAwareQueue<any>;
let loose: TransactionAwareQueue<any>;
let strictBull: Queue;
let looseBull: Queue;
let ds: DataSource;

beforeAll(async () => {
  app = await createLibApp({
    queues: [
      { name: STRICT, whenNoTransaction: 'throw' },
      { name: LOOSE, whenNoTransaction: 'enqueue' },
    ],
    listen: false,
    poolSize: 20,
  });
  host = app.get(TransactionHost);
  strict = app.get(getTransactionAwareQueueToken(STRICT));
  loose = app.get(getTransactionAwareQueueToken(LOOSE));
  strictBull = bullQueue(app, STRICT);
  looseBull = bullQueue(app, LOOSE);
  ds = app.get(DataSource);
});

afterAll(async () => {
  await closeLibApp(app, [STRICT, LOOSE]);
  failures.dispose();
});

afterEach(() => {
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
});

const rows = (label: string) => ds.getRepository(Order).countBy({ label });

it('NotSupported inside a transaction: add() on a throw-queue is refused, Mandatory is refused, the outer still commits', async () => {
  const label = uniqueName('ns');
  let outerJob = '';
  const errors: unknown[] = [];
  await host.withTransaction(async () => {
    await host.getRepository(Order).insert({ label });
    outerJob = await strict.add({ label });
    await host.withTransaction(
      async () => {
        expect(host.isActive).toBe(false);
        await strict.add({ inner: true }).catch((e) => errors.push(e));
        await host
          .withTransaction(async () => undefined, {
            propagation: P.Mandatory,
          })
          .catch((e) => errors.push(e));
      },
      { propagation: P.NotSupported },
    );
    expect(host.isActive).toBe(true);
  });
  expect(errors[0]).toBeInstanceOf(NoTransactionError);
  expect(errors[1]).toBeInstanceOf(TransactionRequiredError);
  await waitFor(async () => inRedis(strictBull, outerJob), 'outer job', 5000);
  expect(await rows(label)).toBe(1);
});

it('a REQUIRED scope inside NotSupported inside a rolled-back transaction commits on its own with its job', async () => {
  const outer = uniqueName('o');
  const inner = uniqueName('i');
  const ids: Record<string, string> = {};
  await host
    .withTransaction(async () => {
      await host.getRepository(Order).insert({ label: outer });
      ids.outer = await strict.add({ outer });
      await host.withTransaction(
        () =>
          host.withTransaction(async () => {
            await host.getRepository(Order).insert({ label: inner });
            ids.inner = await strict.add({ inner });
          }),
        { propagation: P.NotSupported },
      );
      throw new Error('outer fails');
    })
    .catch(() => undefined);
  await waitFor(async () => inRedis(strictBull, ids.inner), 'inner job', 5000);
  await sleep(200);
  expect(await rows(inner)).toBe(1);
  expect(await rows(outer)).toBe(0);
  expect(await inRedis(strictBull, ids.outer)).toBe(false);
});

it('Never inside a NESTED scope is refused before its body runs; the NESTED error caught, the outer commits only its own job', async () => {
  const label = uniqueName('nv');
  const ids: Record<string, string> = {};
  let ranNever = false;
  let err: unknown;
  await host.withTransaction(async () => {
    ids.outer = await loose.add({ label });
    await host
      .withTransaction(
        async () => {
          ids.nested = await loose.add({ nested: true });
          await host.withTransaction(
            async () => {
              ranNever = true;
            },
            { propagation: P.Never },
          );
        },
        { propagation: P.Nested },
      )
      .catch((e) => (err = e));
  });
  expect(ranNever).toBe(false);
  expect(err).toBeInstanceOf(TransactionNotAllowedError);
  await waitFor(async () => inRedis(looseBull, ids.outer), 'outer job', 5000);
  await sleep(200);
  expect(await inRedis(looseBull, ids.nested)).toBe(false);
});

it('Supports inside NotSupported enqueues at once (loose queue); Supports inside a NESTED that rolls back drops its job', async () => {
  const ids: Record<string, string> = {};
  await host.withTransaction(async () => {
    await host.withTransaction(
      () =>
        host.withTransaction(
          async () => {
            ids.free = await loose.add({ free: true });
          },
          { propagation: P.Supports },
        ),
      { propagation: P.NotSupported },
    );
    // enqueued at once, before the outer commit
    await waitFor(async () => inRedis(looseBull, ids.free), 'free job', 5000);
    await host
      .withTransaction(
        async () => {
          await host.withTransaction(
            async () => {
              ids.joined = await loose.add({ joined: true });
            },
            { propagation: P.Supports },
          );
          throw new Error('undo nested');
        },
        { propagation: P.Nested },
      )
      .catch(() => undefined);
  });
  await sleep(200);
  expect(await inRedis(looseBull, ids.joined)).toBe(false);
});

it('Mandatory joining a NESTED scope: an error caught inside the NESTED does not drop the job; released, it commits', async () => {
  const label = uniqueName('md');
  const ids: Record<string, string> = {};
  await host.withTransaction(async () => {
    await host.withTransaction(
      async () => {
        await host
          .withTransaction(
            async () => {
              await host.getRepository(Order).insert({ label });
              ids.m = await strict.add({ label });
              throw new Error('app error in Mandatory');
            },
            { propagation: P.Mandatory },
          )
          .catch(() => undefined);
      },
      { propagation: P.Nested },
    );
  });
  await waitFor(async () => inRedis(strictBull, ids.m), 'job', 5000);
  expect(await rows(label)).toBe(1);
});

it('three levels of NESTED, the middle one rolls back after the innermost released: both inner jobs dropped, the outer kept', async () => {
  const ids: Record<string, string> = {};
  const labels = [uniqueName('l0'), uniqueName('l1'), uniqueName('l2')];
  await host.withTransaction(async () => {
    await host.getRepository(Order).insert({ label: labels[0] });
    ids.l0 = await strict.add({ l: 0 });
    await host
      .withTransaction(
        async () => {
          await host.getRepository(Order).insert({ label: labels[1] });
          ids.l1 = await strict.add({ l: 1 });
          await host.withTransaction(
            async () => {
              await host.getRepository(Order).insert({ label: labels[2] });
              ids.l2 = await strict.add({ l: 2 });
            },
            { propagation: P.Nested },
          );
          throw new Error('middle fails');
        },
        { propagation: P.Nested },
      )
      .catch(() => undefined);
  });
  await waitFor(async () => inRedis(strictBull, ids.l0), 'outer job', 5000);
  await sleep(200);
  expect(await rows(labels[0])).toBe(1);
  expect(await rows(labels[1])).toBe(0);
  expect(await rows(labels[2])).toBe(0);
  expect(await inRedis(strictBull, ids.l1)).toBe(false);
  expect(await inRedis(strictBull, ids.l2)).toBe(false);
});
