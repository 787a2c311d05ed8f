/**
 * adversarial7 (kit, edge inputs): single add() / addBulk() calls with unusual arguments, inside
 * a committed transaction and outside one, on the testing kit and on the real library
 * (Postgres + Redis). The outcome (resolved id, or error class) and the job the queue then
 * holds (name, data, id, delay, priority, attempts) must be the same: README "Testing kit",
 * "so commit, rollback and savepoint semantics are production's", and README "Queues":
 * `add()` / `addBulk()` "take Bull's arguments and resolve at once with the job ids".
 */
import { INestApplication } from '@nestjs/common';
import { Test, TestingModule } from '@nestjs/testing';
import {
  getTransactionAwareQueueToken,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import {
  TransactionalTestingKit,
  TransactionalTestingModule,
} from '../src/testing';
import { uniqueName } from './support/env';
import { closeLibApp, createLibApp } from './support/lib-app';
import { LIB_QUEUE } from './support/queue-kind';

const QUEUE = uniqueName('a7-edge');
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

type Call = (queue: TransactionAwareQueue<any, any>) => Promise<unknown>;

const CALLS: [string, Call][] = [
  ['addBulk([])', (q) => q.addBulk([])],
  ['add() with jobId ""', (q) => q.add('n', { v: 1 }, { jobId: '' } as any)],
  [
    'add() with jobId null',
    (q) => q.add('n', { v: 1 }, { jobId: null } as any),
  ],
  ['add() with data undefined', (q) => q.add('n', undefined)],
  ['add() with data null', (q) => q.add('n', null)],
  ['add() with a string as data', (q) => q.add('n', 'text' as any)],
  ['add(data) with a string as only argument', (q) => q.add('only' as any)],
  ['add() with name ""', (q) => q.add('', { v: 1 })],
  ['add() with a negative delay', (q) => q.add('n', { v: 1 }, { delay: -5 })],
  [
    'add() with a float delay',
    (q) => q.add('n', { v: 1 }, { delay: 1000.5 } as any),
  ],
  ['add() with a Date in the data', (q) => q.add('n', { at: new Date(0) })],
  ['add() with a function in the data', (q) => q.add('n', { f: () => 1 })],
  ['add() with undefined in the data', (q) => q.add('n', { u: undefined })],
  [
    'add() with a toJSON that throws',
    (q) =>
      q.add('n', {
        toJSON() {
          throw new Error('no JSON');
        },
      }),
  ],
  [
    'add() with attempts 0 and lifo',
    (q) => q.add('n', { v: 1 }, { attempts: 0, lifo: true }),
  ],
  [
    'add() with removeOnComplete',
    (q) => q.add('n', { v: 1 }, { removeOnComplete: true }),
  ],
  [
    'addBulk() with a job without opts and a job without name',
    (q) => q.addBulk([{ name: 'a', data: { v: 1 } }, { data: { v: 2 } }]),
  ],
  [
    'add() with a numeric jobId 5',
    (q) => q.add('n', { v: 1 }, { jobId: 5 } as any),
  ],
  ['add() with jobId "a:b:c"', (q) => q.add('n', { v: 1 }, { jobId: 'a:b:c' })],
  ['add() with priority 0.5', (q) => q.add('n', { v: 1 }, { priority: 0.5 })],
];

interface View {
  outcome: string;
  jobs: unknown[];
}

function viewOf(job: {
  id?: unknown;
  name: string;
  data: unknown;
  opts: any;
}): unknown {
  return {
    name: job.name,
    data: job.data ?? null,
    id: String(job.id).replace(UUID, '<uuid>'),
    delay: Number(job.opts?.delay ?? 0) || 0,
    priority: Number(job.opts?.priority ?? 0) || 0,
    attempts: Number(job.opts?.attempts ?? 1) || 1,
  };
}

describe(`adversarial7: testing kit (${LIB_QUEUE}) and unusual add() arguments`, () => {
  let app: INestApplication;
  let prodHost: TransactionHost;
  let prodQueue: TransactionAwareQueue<any, any>;
  let moduleRef: TestingModule;

  beforeAll(async () => {
    app = await createLibApp({ queues: [{ name: QUEUE }], listen: false });
    prodHost = app.get(TransactionHost);
    prodQueue = app.get(getTransactionAwareQueueToken(QUEUE), {
      strict: false,
    });
  });

  afterAll(() => closeLibApp(app, [QUEUE]));
  afterEach(() => moduleRef?.close());

  const settle = (promise: Promise<unknown>) =>
    promise.then(
      (value) => `ok ${JSON.stringify(value ?? null).replace(UUID, '<uuid>')}`,
      (error: unknown) =>
        `err ${error instanceof Error ? error.constructor.name : String(error)}`,
    );

  describe.each(['in a transaction', 'outside a transaction'])(
    '%s',
    (where) => {
      it.each(CALLS)('%s', async (_what, call) => {
        const inTx = where === 'in a transaction';
        const run = async (
          host: TransactionHost,
          queue: TransactionAwareQueue<any, any>,
        ) => {
          if (!inTx) return settle(Promise.resolve().then(() => call(queue)));
          let outcome = '';
          await host.withTransaction(async () => {
            outcome = await settle(Promise.resolve().then(() => call(queue)));
          });
          return outcome;
        };
        await (prodQueue.queue as any).obliterate({ force: true });
        const prodOutcome = await run(prodHost, prodQueue);
        await new Promise((resolve) => setTimeout(resolve, 20));
        const prod: View = {
          outcome: prodOutcome,
          jobs: (
            await (prodQueue.queue as any).getJobs([
              'waiting',
              'delayed',
              'prioritized',
              'paused',
              'active',
              'completed',
              'failed',
            ])
          )
            .map(viewOf)
            .sort((a: unknown, b: unknown) =>
              JSON.stringify(a).localeCompare(JSON.stringify(b)),
            ),
        };
        moduleRef = await Test.createTestingModule({
          imports: [
            TransactionalTestingModule.forRoot({
              adapter: LIB_QUEUE,
              queues: [QUEUE],
            }),
          ],
        }).compile();
        await moduleRef.init();
        const kit = moduleRef.get(TransactionalTestingKit);
        const kitOutcome = await run(
          moduleRef.get(TransactionHost),
          moduleRef.get(getTransactionAwareQueueToken(QUEUE)),
        );
        const inKit: View = {
          outcome: kitOutcome,
          jobs: kit
            .jobs(QUEUE)
            .map(viewOf)
            .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
        };
        expect(inKit).toEqual(prod);
      });
    },
  );
});
