import { Controller, INestApplication, Param, Post } from '@nestjs/common';
import { Observable, defer } from 'rxjs';
import request from 'supertest';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  Propagation,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { backendId, dbQuery, killBackend } from './support/db';
import {
  itOnMariaDb,
  itOnPostgres,
  onMariaDb,
  uniqueName,
} from './support/env';
import { Order } from './support/order.entity';
import { createOutboxTable } from './support/outbox-table';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
} from './support/lib-app';
import {
  nextMacrotask,
  watchProcessFailures,
} from './support/process-failures';

/**
 * adversarial7: failures that only appear AT COMMIT (after the handler returned), over real
 * HTTP. The client must get a 5xx and no row, no job (plain or durable) must exist; a 2xx means
 * row and both jobs exist.
 */
const PLAIN = uniqueName('a7c-plain');
const DURABLE = uniqueName('a7c-durable');
const OUTBOX = `a7c_outbox_${process.pid}`;
const DEFERRED = 'a7c_deferred';
const PG_ONLY =
  'deferrable constraints / SERIALIZABLE commit-time checks / idle_in_transaction_session_timeout are Postgres features';

const failures = watchProcessFailures();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Two requests meet here after their writes, before they return (and commit). */
class Barrier {
  private waiting: (() => void)[] = [];
  constructor(private readonly parties: number) {}
  arrive(): Promise<void> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      if (this.waiting.length >= this.parties) {
        for (const go of this.waiting.splice(0)) go();
      }
    });
  }
}
let barrier = new Barrier(2);

@Controller()
class CommitController {
  constructor(
    private readonly tx: TransactionHost,
    private readonly ds: DataSource,
    @InjectTransactionAwareQueue(PLAIN)
    private readonly plain: TransactionAwareQueue<{ label: string }>,
    @InjectTransactionAwareQueue(DURABLE)
    private readonly durable: TransactionAwareQueue<{ label: string }>,
  ) {}

  private async write(label: string) {
    await this.tx.getRepository(Order).save({ label });
    await this.plain.add({ label }, { jobId: label });
    await this.durable.add({ label }, { jobId: `${label}-d` });
  }

  /** Inserts `key` twice into a DEFERRABLE INITIALLY DEFERRED unique column: fails at COMMIT. */
  private async duplicateDeferred(key: string) {
    await this.tx.manager.query(`INSERT INTO ${DEFERRED} (k) VALUES ($1)`, [
      key,
    ]);
    await this.tx.manager.query(`INSERT INTO ${DEFERRED} (k) VALUES ($1)`, [
      key,
    ]);
  }

  @Post('deferred/:label')
  @Transactional()
  async deferred(@Param('label') label: string) {
    await this.write(label);
    await this.duplicateDeferred(label);
    return { ok: true };
  }

  @Post('deferred-i/:label')
  @Transactional({ useInterceptor: true })
  async deferredIntercepted(@Param('label') label: string) {
    await this.write(label);
    await this.duplicateDeferred(label);
    return { ok: true };
  }

  @Post('deferred-obs/:label')
  @Transactional({ useInterceptor: true })
  deferredObservable(@Param('label') label: string): Observable<unknown> {
    return defer(async () => {
      await this.write(label);
      await this.duplicateDeferred(label);
      return { ok: true };
    });
  }

  @Post('deferred-rn/:label')
  @Transactional({ propagation: Propagation.RequiresNew, useInterceptor: true })
  async deferredRequiresNew(@Param('label') label: string) {
    await this.write(label);
    await this.duplicateDeferred(label);
    return { ok: true };
  }

  /** Two concurrent requests insert the same deferred-unique key: the second COMMIT fails. */
  @Post('race/:key/:label')
  @Transactional()
  async race(@Param('key') key: string, @Param('label') label: string) {
    await this.write(label);
    await this.tx.manager.query(`INSERT INTO ${DEFERRED} (k) VALUES ($1)`, [
      key,
    ]);
    await barrier.arrive();
    return { ok: true };
  }

  /** Write skew under SERIALIZABLE: both read, both write, then both commit; one gets 40001. */
  @Post('skew/:key/:label')
  @Transactional({ isolationLevel: 'SERIALIZABLE' })
  async skew(@Param('key') key: string, @Param('label') label: string) {
    const [{ n }] = await this.tx.manager.query(
      `SELECT count(*)::int AS n FROM ${DEFERRED} WHERE k LIKE $1`,
      [`${key}%`],
    );
    await this.write(label);
    await this.tx.manager.query(`INSERT INTO ${DEFERRED} (k) VALUES ($1)`, [
      `${key}-${label}-${n}`,
    ]);
    await barrier.arrive();
    return { ok: true };
  }

  /** The transaction's backend is terminated after the handler's last statement. */
  @Post('killed/:label')
  @Transactional()
  async killed(@Param('label') label: string) {
    await this.write(label);
    const pid = await backendId(this.tx.manager);
    await killBackend(this.ds, pid);
    await sleep(150); // the client sees the connection go
    return { ok: true };
  }

  @Post('killed-i/:label')
  @Transactional({ useInterceptor: true })
  async killedIntercepted(@Param('label') label: string) {
    return this.killed(label);
  }

  @Post('ok/:label')
  @Transactional()
  async ok(@Param('label') label: string) {
    await this.write(label);
    return { ok: true };
  }

  /** MariaDB's own idle-transaction timeout (seconds). */
  @Post('idle-maria/:label')
  @Transactional()
  async idleMaria(@Param('label') label: string) {
    await this.write(label);
    await this.tx.manager.query('SET SESSION idle_transaction_timeout = 1');
    await sleep(1600);
    return { ok: true };
  }

  /** A REQUIRES_NEW scope inside the handler commits; then the handler's own COMMIT fails. */
  @Post('rn-inside/:label')
  @Transactional()
  async requiresNewInside(@Param('label') label: string) {
    await this.tx.withTransaction(() => this.write(`${label}-inner`), {
      propagation: Propagation.RequiresNew,
    });
    return this.killed(label);
  }

  /** The server ends the idle transaction while the handler awaits something else. */
  @Post('idle/:label')
  @Transactional()
  async idle(@Param('label') label: string) {
    await this.write(label);
    await this.tx.manager.query(
      `SET LOCAL idle_in_transaction_session_timeout = '100ms'`,
    );
    await sleep(500);
    return { ok: true };
  }
}

describe('adversarial7-http: failures that appear only at COMMIT', () => {
  let app: INestApplication;
  let url: string;
  const rows = (label: string) =>
    app.get(DataSource).getRepository(Order).countBy({ label });
  const outboxRows = async (label: string) =>
    Number(
      (
        await dbQuery(
          app.get(DataSource),
          `SELECT count(*)::int AS n FROM ${OUTBOX} WHERE data->>'label' = $1`,
          [label],
        )
      )[0].n,
    );
  /** [rows, plain job, durable job, outbox rows] of one request. */
  const state = async (label: string) => [
    await rows(label),
    await inRedis(bullQueue(app, PLAIN), label),
    await inRedis(bullQueue(app, DURABLE), `${label}-d`),
    await outboxRows(label),
  ];
  const COMMITTED = [1, true, true, 1];
  const NOTHING = [0, false, false, 0];

  beforeAll(async () => {
    await createOutboxTable(OUTBOX);
    app = await createLibApp({
      controllers: [CommitController],
      queues: [{ name: PLAIN }, { name: DURABLE, durable: true }],
      options: {
        outbox: { tableName: OUTBOX, relay: { enabled: false } },
      },
    });
    url = await app.getUrl();
    if (!onMariaDb) {
      await app
        .get(DataSource)
        .query(
          `CREATE TABLE IF NOT EXISTS ${DEFERRED} (k text, CONSTRAINT ${DEFERRED}_u UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)`,
        );
    }
  });

  afterAll(async () => {
    await closeLibApp(app, [PLAIN, DURABLE]);
    failures.dispose();
  });

  itOnPostgres(PG_ONLY).each([
    'deferred',
    'deferred-i',
    'deferred-obs',
    'deferred-rn',
  ])(
    'a deferred unique violation at COMMIT (%s): 500, no row, no job, no outbox row',
    async (route) => {
      const label = uniqueName(route);
      const res = await request(url).post(`/${route}/${label}`);
      expect(res.status).toBe(500);
      expect(await state(label)).toEqual(NOTHING);
    },
  );

  itOnPostgres(PG_ONLY)(
    'two concurrent requests, one deferred unique key: exactly one 201 (row and jobs), the other 500 (nothing)',
    async () => {
      barrier = new Barrier(2);
      const key = uniqueName('race');
      const labels = [uniqueName('race-a'), uniqueName('race-b')];
      const res = await Promise.all(
        labels.map((label) => request(url).post(`/race/${key}/${label}`)),
      );
      expect(res.map((r) => r.status).sort()).toEqual([201, 500]);
      for (const [i, label] of labels.entries()) {
        expect(await state(label)).toEqual(
          res[i].status === 201 ? COMMITTED : NOTHING,
        );
      }
    },
  );

  itOnPostgres(PG_ONLY)(
    'SERIALIZABLE write skew failing at COMMIT (40001): one 201 with row and jobs, one 500 with nothing',
    async () => {
      barrier = new Barrier(2);
      const key = uniqueName('skew');
      const labels = [uniqueName('skew-a'), uniqueName('skew-b')];
      const res = await Promise.all(
        labels.map((label) => request(url).post(`/skew/${key}/${label}`)),
      );
      expect(res.map((r) => r.status).sort()).toEqual([201, 500]);
      for (const [i, label] of labels.entries()) {
        expect(await state(label)).toEqual(
          res[i].status === 201 ? COMMITTED : NOTHING,
        );
      }
    },
  );

  it.each(['killed', 'killed-i'])(
    'the backend is terminated between the handler and COMMIT (%s): 500, no row, no job',
    async (route) => {
      const label = uniqueName(route);
      const res = await request(url).post(`/${route}/${label}`);
      expect(res.status).toBe(500);
      expect(await state(label)).toEqual(NOTHING);
      // the app still serves (the pool replaced the dead connection)
      const next = uniqueName('after-kill');
      await request(url).post(`/ok/${next}`).expect(201);
      expect(await state(next)).toEqual(COMMITTED);
    },
  );

  itOnPostgres(PG_ONLY)(
    'idle_in_transaction_session_timeout ends the transaction while the handler awaits: 500, nothing',
    async () => {
      const label = uniqueName('idle');
      const res = await request(url).post(`/idle/${label}`);
      expect(res.status).toBe(500);
      expect(await state(label)).toEqual(NOTHING);
    },
  );

  itOnMariaDb(
    'MariaDB idle_transaction_timeout ends the transaction while the handler awaits: 500, nothing',
    async () => {
      const label = uniqueName('idle-maria');
      const res = await request(url).post(`/idle-maria/${label}`);
      expect(res.status).toBe(500);
      expect(await state(label)).toEqual(NOTHING);
    },
  );

  it('REQUIRES_NEW inside the handler commits on its own; the handler COMMIT fails: 500, only the inner work (README: Propagation)', async () => {
    const label = uniqueName('rn-inside');
    const res = await request(url).post(`/rn-inside/${label}`);
    expect(res.status).toBe(500);
    expect(await state(`${label}-inner`)).toEqual(COMMITTED);
    expect(await state(label)).toEqual(NOTHING);
  });

  it('no unhandled rejection or uncaught exception', async () => {
    await sleep(200);
    await nextMacrotask();
    expect(failures.unhandledRejections).toEqual([]);
    expect(failures.uncaughtExceptions).toEqual([]);
  });
});
