/**
 * Red-team round 2: the public API at its edges. Propagation given as strings, the decorator on
 * getters and static methods, `.call()` with another `this`, request-scoped and transient
 * providers and a provider instance shared by two applications (the runner lookup), and the
 * testing kit against the real module for the same code.
 */
import {
  Controller,
  INestApplication,
  Injectable,
  Post,
  Scope,
} from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  Propagation,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
  TransactionalError,
  getTransactionAwareQueueToken,
} from '../src';
import {
  TransactionalTestingKit,
  TransactionalTestingModule,
} from '../src/testing';
import { uniqueName, onMariaDb } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  waitFor,
} from './support/lib-app';
import { Order } from './support/order.entity';
import { watchProcessFailures } from './support/process-failures';
import { isolationLevel, poolState } from './support/db';
import { itBullOnly } from './support/queue-kind';

const QA = uniqueName('rt2-api-a');
const QB = uniqueName('rt2-api-b');
const failures = watchProcessFailures();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class StaticHolder {
  @Transactional({ propagation: Propagation.Mandatory })
  static async mandatory() {
    return 'ran';
  }
}

@Injectable()
class Writer {
  constructor(readonly host: TransactionHost) {}

  @Transactional()
  async write(label: string, fail = false) {
    await this.host.getRepository(Order).insert({ label });
    if (fail) throw new Error('undo');
    return this.host.isActive;
  }
}

@Injectable({ scope: Scope.TRANSIENT })
class TransientWriter extends Writer {}

@Controller({ path: 'rs', scope: Scope.REQUEST })
class RequestScopedController {
  constructor(private readonly host: TransactionHost) {}

  @Post()
  @Transactional()
  async create() {
    const label = uniqueName('rs');
    await this.host.getRepository(Order).insert({ label });
    return { label };
  }
}

@Controller('tr')
class TransientUserController {
  constructor(private readonly writer: TransientWriter) {}

  @Post()
  async create() {
    const label = uniqueName('tr');
    await this.writer.write(label);
    return { label };
  }
}

/** One instance handed to both applications (useValue). */
class SharedService {
  @Transactional()
  async run<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }
}
const shared = new SharedService();

let a: INestApplication;
let b: INestApplication;

async function rowCount(label: string) {
  return a.get(DataSource).getRepository(Order).countBy({ label });
}

beforeAll(async () => {
  a = await createLibApp({
    queues: [{ name: QA }],
    controllers: [RequestScopedController, TransientUserController],
    providers: [
      Writer,
      TransientWriter,
      { provide: SharedService, useValue: shared },
    ],
  });
  b = await createLibApp({
    queues: [{ name: QB }],
    providers: [{ provide: SharedService, useValue: shared }],
    listen: false,
  });
});

afterAll(async () => {
  await closeLibApp(b, [QB]);
  await closeLibApp(a, [QA]);
  failures.dispose();
});

afterEach(() => {
  expect(failures.unhandledRejections).toEqual([]);
  expect(failures.uncaughtExceptions).toEqual([]);
});

describe('propagation given as strings', () => {
  it("the enum's string values work ('NESTED' rolls back only the inner scope)", async () => {
    const host = a.get(TransactionHost);
    const outer = uniqueName('s');
    const inner = uniqueName('s');
    await host.withTransaction(async () => {
      await host.getRepository(Order).insert({ label: outer });
      await host
        .withTransaction(
          async () => {
            await host.getRepository(Order).insert({ label: inner });
            throw new Error('undo');
          },
          { propagation: 'NESTED' as Propagation },
        )
        .catch(() => undefined);
    });
    expect(await rowCount(outer)).toBe(1);
    expect(await rowCount(inner)).toBe(0);
  });

  it('a wrong string (enum key, lower case) is refused with a clear error, and nothing runs', async () => {
    const host = a.get(TransactionHost);
    let ran = false;
    for (const value of ['RequiresNew', 'nested', '']) {
      await expect(
        host.withTransaction(
          async () => {
            ran = true;
          },
          { propagation: value as Propagation },
        ),
      ).rejects.toThrow(/unknown propagation/);
    }
    expect(ran).toBe(false);
  });
});

describe('decorator placement', () => {
  it('on a getter: a TypeError at class definition naming the member', () => {
    expect(() => {
      class Bad {
        @Transactional()
        get value() {
          return 1;
        }
      }
      return Bad;
    }).toThrow(/value is not a method/);
  });

  it('on a static method: errors name the class (not "Function")', async () => {
    const error = await StaticHolder.mandatory().catch((e: Error) => e);
    expect(error).toBeInstanceOf(TransactionalError);
    expect((error as Error).message).toContain('StaticHolder.mandatory');
  });

  it('.call() with another `this` inside a scope of application A joins that scope', async () => {
    const host = a.get(TransactionHost);
    const writer = a.get(Writer);
    const label = uniqueName('call');
    await host
      .withTransaction(async () => {
        const active = await Writer.prototype.write.call(
          { host } as unknown as Writer,
          label,
        );
        expect(active).toBe(true);
        throw new Error('undo outer');
      })
      .catch(() => undefined);
    expect(await rowCount(label)).toBe(0);
    expect(writer).toBeDefined();
  });
});

describe('runner lookup with two applications running', () => {
  it('a request-scoped controller with @Transactional handles a request (README: a provider created by an application uses its runner)', async () => {
    const res = await request(a.getHttpServer()).post('/rs');
    expect(res.status).toBe(201);
    expect(await rowCount(res.body.label)).toBe(1);
  });

  it('a transient provider with @Transactional injected into a controller works', async () => {
    const direct = await a
      .get(TransientUserController)
      .create()
      .catch((e: Error) => e.message);
    expect(direct).toMatchObject({ label: expect.any(String) });
    const res = await request(a.getHttpServer()).post('/tr');
    expect(res.status).toBe(201);
    expect(await rowCount(res.body.label)).toBe(1);
  });

  it("a provider instance shared by both apps, called inside app A's transaction, joins it (REQUIRED)", async () => {
    const host = a.get(TransactionHost);
    const label = uniqueName('shared');
    let innerActive: boolean | undefined;
    await host
      .withTransaction(async () => {
        await shared.run(async () => {
          innerActive = host.isActive;
          await host.getRepository(Order).insert({ label });
        });
        throw new Error('undo outer');
      })
      .catch(() => undefined);
    // expected: joined A's transaction, so the row is rolled back with it
    expect({ innerActive, rows: await rowCount(label) }).toEqual({
      innerActive: true,
      rows: 0,
    });
  });
});

describe('testing kit against the real module, same code', () => {
  @Injectable()
  class Jobs {
    constructor(
      readonly host: TransactionHost,
      @InjectTransactionAwareQueue('kit-q')
      readonly q: TransactionAwareQueue<any>,
    ) {}

    @Transactional()
    async sameIdTwice(id: string) {
      const first = await this.q.add({ n: 1 }, { jobId: id });
      const second = await this.q.add({ n: 2 }, { jobId: id });
      return [first, second];
    }

    @Transactional()
    async repeatable() {
      return this.q.add({ r: 1 }, { repeat: { every: 60_000 } });
    }
  }

  it('the same jobId twice in one transaction: one job in both (README: Bull keeps the first)', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [TransactionalTestingModule.forRoot({ queues: ['kit-q'] })],
      providers: [Jobs],
    }).compile();
    await moduleRef.init();
    try {
      const kit = moduleRef.get(TransactionalTestingKit);
      const ids = await moduleRef.get(Jobs).sameIdTwice('dup-1');
      expect(ids).toEqual(['dup-1', 'dup-1']);
      const jobs = kit.jobs('kit-q');
      // Real module: one Bull job, data of the first add
      expect(jobs.map((j) => j.data)).toEqual([{ n: 1 }]);
    } finally {
      await moduleRef.close();
    }
  });

  itBullOnly("BullMQ's add() has no repeat (refused: bullmq-job-ids.spec.ts)")(
    'a repeatable job resolves with the same kind of key as real Bull',
    async () => {
      const moduleRef = await Test.createTestingModule({
        imports: [TransactionalTestingModule.forRoot({ queues: ['kit-q'] })],
        providers: [Jobs],
      }).compile();
      await moduleRef.init();
      const kitKey = await moduleRef
        .get(Jobs)
        .repeatable()
        .finally(() => moduleRef.close());
      const realQueue = a.get<TransactionAwareQueue<any>>(
        getTransactionAwareQueueToken(QA),
      );
      const realKey = await a
        .get(TransactionHost)
        .withTransaction(() =>
          realQueue.add({ r: 1 }, { repeat: { every: 60_000 } }),
        );
      await waitFor(
        async () =>
          (await bullQueue(a, QA).getRepeatableJobs()).some(
            (r) => r.key === realKey,
          ),
        'the real schedule',
      );
      await bullQueue(a, QA).removeRepeatableByKey(realKey);
      // same shape: '<name>:<jobId>:<endDate>:<tz>:<every or cron>'
      expect(String(kitKey).split(':').length).toBe(
        String(realKey).split(':').length,
      );
      expect(String(kitKey).split(':').at(-1)).toBe(
        String(realKey).split(':').at(-1),
      );
      await sleep(10);
    },
  );
});

describe('isolation levels', () => {
  const level = async () => isolationLevel(a.get(TransactionHost).manager);

  it('ignored on a joined scope and on NESTED (documented), applied by REQUIRES_NEW', async () => {
    const host = a.get(TransactionHost);
    const seen: string[] = [];
    const requested = onMariaDb ? 'read committed' : 'repeatable read';
    await host.withTransaction(async () => {
      seen.push(await level());
      await host.withTransaction(async () => seen.push(await level()), {
        isolationLevel: 'SERIALIZABLE',
      });
      await host.withTransaction(async () => seen.push(await level()), {
        isolationLevel: 'SERIALIZABLE',
        propagation: Propagation.Nested,
      });
      await host.withTransaction(async () => seen.push(await level()), {
        isolationLevel: onMariaDb ? 'READ COMMITTED' : 'REPEATABLE READ',
        propagation: Propagation.RequiresNew,
      });
    });
    // The database's default: READ COMMITTED on Postgres, REPEATABLE READ on MySQL/MariaDB.
    const byDefault = onMariaDb ? 'repeatable read' : 'read committed';
    expect(seen).toEqual([byDefault, byDefault, byDefault, requested]);
  });

  it('an invalid isolation level rejects before the body runs and leaks no connection', async () => {
    const host = a.get(TransactionHost);
    let ran = false;
    for (let i = 0; i < 25; i++) {
      await expect(
        host.withTransaction(
          async () => {
            ran = true;
          },
          { isolationLevel: 'BOGUS' as 'SERIALIZABLE' },
        ),
      ).rejects.toThrow();
    }
    expect(ran).toBe(false);
    expect(poolState(a.get(DataSource)).inUse).toBe(0);
  });
});
