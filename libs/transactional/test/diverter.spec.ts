import { INestApplication, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import {
  getTransactionAwareQueueToken,
  JobDiverter,
  OutgoingJob,
  TransactionalOutbox,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { dbQuery } from './support/db';
import { uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  findJob,
  jobCounts,
  waitFor,
} from './support/lib-app';
import { Order } from './support/order.entity';
import {
  createOutboxTable,
  makeOutboxRowsEligible,
} from './support/outbox-table';

const PLAIN = uniqueName('divert-plain');
const DURABLE = uniqueName('divert-durable');
const QUEUES = [PLAIN, DURABLE];
const TABLE = 'tx_spec_outbox_diverter';
const DIVERTER = Symbol('Diverter');

type Payload = { n: number; label: string };

/** One call of the diverter: the job ids it was shown, and whether their rows were committed. */
interface Shown {
  jobIds: string[];
  committed: boolean[];
}

/** Parks jobs with an odd `n` (in memory, by job id: idempotent) and gives back the rest. */
@Injectable()
class OddParker implements JobDiverter {
  mode: 'park' | 'reject' | 'foreign' = 'park';
  readonly parked = new Map<string, Payload>();
  readonly calls: Shown[] = [];

  constructor(private readonly dataSource: DataSource) {}

  async divert(jobs: readonly OutgoingJob[]): Promise<readonly OutgoingJob[]> {
    const committed = await Promise.all(
      jobs.map(
        async (job) =>
          (await this.dataSource.getRepository(Order).count({
            where: { label: (job.data as Payload).label },
          })) > 0,
      ),
    );
    this.calls.push({
      jobIds: jobs.map((job) => String(job.opts.jobId)),
      committed,
    });
    if (this.mode === 'reject') throw new Error('the parking lot is closed');
    if (this.mode === 'foreign') return [{ ...jobs[0] }];
    const kept: OutgoingJob[] = [];
    for (const job of jobs) {
      const data = job.data as Payload;
      if (data.n % 2 === 1) this.parked.set(String(job.opts.jobId), data);
      else kept.push(job);
    }
    return kept;
  }
}

describe('when a queue has a JobDiverter', () => {
  let app: INestApplication;
  let diverter: OddParker;
  const aware = (name: string) =>
    app.get<TransactionAwareQueue<Payload>>(
      getTransactionAwareQueueToken(name),
    );
  const outbox = () => app.get(TransactionalOutbox);
  const queuedIds = async (name: string) =>
    (await bullQueue(app, name).getJobs(['waiting', 'delayed']))
      .map((job) => String(job.id))
      .sort();
  /** Writes an order row per `n` and adds its job to `queue`, in one transaction. */
  async function commit(queue: string, ns: number[], fail = false) {
    const tag = uniqueName('order');
    return app.get(TransactionHost).withTransaction(async () => {
      const manager = app.get(TransactionHost).manager;
      const ids: string[] = [];
      for (const n of ns) {
        const label = `${tag}-${n}`;
        await manager.insert(Order, { label });
        ids.push(await aware(queue).add({ n, label }));
      }
      if (fail) throw new Error('the handler failed');
      return ids;
    });
  }
  /** The outbox rows of `ids` not dispatched yet. */
  const pendingRows = async (ids: string[]) =>
    (await dbQuery(
      app.get(DataSource),
      `SELECT id, last_error FROM ${TABLE}
        WHERE dispatched_at IS NULL AND id = ANY($1::text[]) ORDER BY id`,
      [ids],
    )) as { id: string; last_error: string | null }[];
  const makeEligible = () => makeOutboxRowsEligible(app.get(DataSource), TABLE);

  beforeAll(async () => {
    await createOutboxTable(TABLE);
    app = await createLibApp({
      queues: [
        { name: PLAIN, diverter: DIVERTER },
        { name: DURABLE, durable: true, diverter: DIVERTER },
      ],
      providers: [OddParker, { provide: DIVERTER, useExisting: OddParker }],
      options: {
        outbox: {
          tableName: TABLE,
          markBatchDelayMs: 5,
          relay: { enabled: false },
        },
      },
      listen: false,
    });
    diverter = app.get(OddParker);
  });

  afterAll(() => closeLibApp(app, QUEUES));

  beforeEach(async () => {
    diverter.mode = 'park';
    diverter.parked.clear();
    diverter.calls.length = 0;
    for (const name of QUEUES) await bullQueue(app, name).empty();
  });

  it.each([
    ['not durable', PLAIN],
    ['durable', DURABLE],
  ])(
    'should show a %s queue its jobs once, after the commit, and hand the queue only those given back',
    async (_, queue) => {
      const ids = await commit(queue, [0, 1, 2, 3]);

      expect(diverter.calls).toEqual([
        { jobIds: ids, committed: [true, true, true, true] },
      ]);
      expect([...diverter.parked.keys()].sort()).toEqual(
        [ids[1], ids[3]].sort(),
      );
      expect(await queuedIds(queue)).toEqual([ids[0], ids[2]].sort());
      expect(aware(queue).stats).toMatchObject({ failed: 0 });
      if (queue === DURABLE) {
        await waitFor(
          async () => (await pendingRows(ids)).length === 0,
          'the fast path to mark the rows dispatched',
        );
      }
    },
  );

  it('should never show it the jobs of a transaction that rolled back', async () => {
    await expect(commit(DURABLE, [1, 2], true)).rejects.toThrow(
      'the handler failed',
    );

    expect(diverter.calls).toEqual([]);
    expect(await jobCounts(bullQueue(app, DURABLE))).toMatchObject({
      waiting: 0,
    });
  });

  it('should show it jobs added outside a transaction too', async () => {
    const id = await aware(PLAIN).add({ n: 1, label: 'no-row' });

    expect(diverter.calls).toEqual([{ jobIds: [id], committed: [false] }]);
    expect(diverter.parked.has(id)).toBe(true);
    expect(await findJob(bullQueue(app, PLAIN), id)).toBeNull();
  });

  it('should leave durable jobs to the relay when it rejects, and show them again from there', async () => {
    diverter.mode = 'reject';
    const ids = await commit(DURABLE, [0, 1]);

    expect(await queuedIds(DURABLE)).toEqual([]);
    const pending = await pendingRows(ids);
    expect(pending.map((row) => row.id)).toEqual([...ids].sort());

    diverter.mode = 'park';
    await makeEligible();
    expect(await outbox().relayOnce()).toBe(2);

    expect(diverter.calls.map((call) => [...call.jobIds].sort())).toEqual([
      [...ids].sort(),
      [...ids].sort(),
    ]);
    expect([...diverter.parked.keys()]).toEqual([ids[1]]);
    expect(await queuedIds(DURABLE)).toEqual([ids[0]]);
    expect(await pendingRows(ids)).toEqual([]);
  });

  it('should count the jobs of a non-durable queue as failed when it rejects', async () => {
    diverter.mode = 'reject';
    const failed = aware(PLAIN).stats.failed;

    await commit(PLAIN, [0, 1]);

    expect(aware(PLAIN).stats.failed).toBe(failed + 2);
    expect(await queuedIds(PLAIN)).toEqual([]);
  });

  it('should refuse a job it was not shown, and leave the durable jobs to the relay', async () => {
    diverter.mode = 'foreign';
    const ids = await commit(DURABLE, [0, 2]);

    expect(await queuedIds(DURABLE)).toEqual([]);
    expect((await pendingRows(ids)).map((row) => row.id)).toEqual(
      [...ids].sort(),
    );
    await makeEligible();
    const refusal = `The diverter of queue "${DURABLE}" gave back a job it was not shown`;
    await expect(outbox().relayOnce()).rejects.toThrow(refusal);
    const rows = await pendingRows(ids);
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row.last_error).toContain(refusal);
    diverter.mode = 'park';
    await makeEligible();
    expect(await outbox().relayOnce()).toBe(2);
    expect(await queuedIds(DURABLE)).toEqual([...ids].sort());
  });
});

describe('when the diverter of a queue is not provided', () => {
  it('should refuse to start, naming the queue and the token', async () => {
    const name = uniqueName('divert-missing');
    let app: INestApplication | undefined;
    try {
      await expect(
        createLibApp({
          queues: [{ name, diverter: 'NoSuchDiverter' }],
          listen: false,
        }).then((started) => (app = started)),
      ).rejects.toThrow(
        `TransactionalModule.registerQueue({ name: '${name}', diverter }) found no ` +
          'provider NoSuchDiverter with a divert(jobs) method',
      );
    } finally {
      await closeLibApp(app, [name]);
    }
  });
});
