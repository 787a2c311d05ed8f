import { sleep } from './support/cleanup';
import { expectNothingLost, finalCheck } from './support/checker';
import { FaultEnv } from './support/fault-env';
import { setUpTenant, startLoad, summarize } from './support/load';

const PREFIX = 'bull:webhook-deliveries';

describe('when Redis is flushed (FLUSHALL) with deliveries in flight', () => {
  let env: FaultEnv;

  beforeAll(async () => {
    env = await FaultEnv.create('4');
  });

  afterAll(async () => {
    await env?.close();
  });

  it('should re-enqueue the deliveries from Postgres and lose nothing', async () => {
    // Few workers and a slow receiver: a backlog of jobs waits in Redis when it is flushed.
    const app = await env.start('app', {
      WORKER_CONCURRENCY: '4',
      PER_ENDPOINT_CONCURRENCY: '4',
    });
    const tenant = await setUpTenant(app.url, env.sink.url, 20);
    env.sink.mode = 100;
    const results = await startLoad({
      tenant,
      baseUrl: () => app.url,
      total: 200,
      concurrency: 10,
    }).done;
    expect(summarize(results)).toEqual({ 201: 200 });

    // The newest deliveries are at the end of the backlog: still pending after the flush.
    const last = await env.db.query<{ id: string }>(
      `SELECT id FROM deliveries WHERE status = 'pending' AND attempt_count = 0
        ORDER BY created_at DESC LIMIT 3`,
    );
    expect(last).toHaveLength(3);
    const redis = env.redis.client();
    let jobsBefore: number;
    try {
      // Bull moves a job to active in two steps: BRPOPLPUSH, then a script that locks the job
      // and sets its `processedOn`. A flush in between leaves that script a husk: the job's
      // hash with `processedOn` only, in no list, locked for a while. The flush and three such
      // husks go in one transaction, as the race would leave them.
      // NOTE: counted in the same transaction as the flush: counted before it, a job a worker
      // takes in between is delivered as usual and never needs the reconciler. The jobs lost
      // are those waiting in Bull and those parked for the endpoint's slots (at enqueue, by
      // the service's DeliveryDiverter, or by a worker).
      const multi = redis
        .multi()
        .llen(`${PREFIX}:wait`)
        .zcard(`bull:endpoint-parked:${tenant.endpointId}`)
        .flushall();
      for (const { id } of last) {
        multi.hset(`${PREFIX}:${id}:1`, 'processedOn', Date.now());
        multi.set(`${PREFIX}:${id}:1:lock`, 'lost-worker', 'PX', 3000);
      }
      const replies = await multi.exec();
      jobsBefore = Number(replies![0][1]) + Number(replies![1][1]);
    } finally {
      redis.disconnect();
    }
    // Jobs lost with the flush: the reconciler must find their deliveries in Postgres.
    expect(jobsBefore).toBeGreaterThan(10);

    await sleep(500);
    env.sink.mode = 'ok';
    const report = await finalCheck({
      test: '4 Redis flushed',
      db: env.db,
      sink: env.sink,
      results,
      services: env.services,
      redis: env.redis,
    });
    expectNothingLost(report);
    expect(report.committedEvents).toBe(200);
    expect(report.reconciled).toBeGreaterThanOrEqual(jobsBefore);
    // Without their removal the re-enqueues of those three would be no-ops forever.
    expect(report.husksRemoved).toBeGreaterThanOrEqual(3);
  });
});
