import { waitFor } from './cleanup';
import type { FaultDatabase } from './fault-database';
import type { LoadResult } from './load';
import type { OwnRedis } from './own-redis';
import type { ServiceProcess } from './service-process';
import type { Sink } from './sink';

/** The numbers of one fault spec: what was asked, committed, received. */
export interface FaultReport {
  test: string;
  /** Requests the load sent. */
  requests: number;
  /** Of those, answered 2xx. */
  answered2xx: number;
  /** Events with deliveries committed in Postgres. */
  committedEvents: number;
  /** Webhook requests the sink got, repeats included. */
  received: number;
  /** Distinct webhook-ids among them. */
  receivedUnique: number;
  /** Requests beyond the first of their webhook-id. */
  duplicates: number;
  /** Committed events the sink never got (must be 0). */
  losses: number;
  /** Webhook-ids the sink got that were never committed (rolled back: must be 0). */
  phantoms: number;
  /** 2xx-answered requests whose event is not committed (must be 0). */
  acknowledgedNotCommitted: number;
  /** Repeats with no attempt row behind them (each send is claimed first: must be 0). */
  unexplained: number;
  /** Deliveries with more than one successful attempt (two senders at once: must be 0). */
  sentTwice: number;
  /** Delivery attempts recorded, and of those interrupted (a killed worker's). */
  attempts: number;
  interruptedAttempts: number;
  /** Jobs the outbox relays and the reconcilers re-enqueued (from the service logs). */
  relayed: number;
  reconciled: number;
  /** Empty job hashes (left by Bull when Redis lost a job) the reconcilers removed. */
  husksRemoved: number;
}

/** Options of `finalCheck`. */
export interface FinalCheckOptions {
  test: string;
  db: FaultDatabase;
  sink: Sink;
  results: LoadResult[];
  services: ServiceProcess[];
  /** The spec's Redis: what it holds for open deliveries goes into a timeout message. */
  redis?: OwnRedis;
  /** How long deliveries may take to become final. Default 60 s. */
  timeoutMs?: number;
}

/** Counts of delivery statuses and pending outbox rows, for progress and timeout messages. */
async function state(db: FaultDatabase) {
  const statuses = await db.query<{ status: string; n: string }>(
    `SELECT status, count(*) AS n FROM deliveries GROUP BY status ORDER BY status`,
  );
  const [outbox] = await db.query<{ pending: string }>(
    `SELECT count(*) AS pending FROM transactional_outbox WHERE dispatched_at IS NULL`,
  );
  const byStatus = Object.fromEntries(
    statuses.map((s) => [s.status, Number(s.n)]),
  );
  return { byStatus, outboxPending: Number(outbox.pending) };
}

/**
 * Waits (bounded) until every delivery row has succeeded and every outbox row is dispatched,
 * then compares what Postgres committed with what the sink received; prints and returns the
 * report. Assert on it with `expectNothingLost`.
 */
export async function finalCheck(
  options: FinalCheckOptions,
): Promise<FaultReport> {
  const { db, sink, results, services } = options;
  await waitFor(
    async () => {
      const { byStatus, outboxPending } = await state(db);
      const open = Object.entries(byStatus).some(
        ([status, n]) => status !== 'succeeded' && n > 0,
      );
      return !open && outboxPending === 0;
    },
    'every delivery to succeed and every outbox row to be dispatched',
    options.timeoutMs ?? 60_000,
    async () => {
      const now = await state(db);
      const stuck = await db.query(
        `SELECT id, event_id, status, attempt_count, next_attempt_at, locked_until
           FROM deliveries WHERE status <> 'succeeded' ORDER BY created_at LIMIT 5`,
      );
      return [
        `deliveries by status: ${JSON.stringify(now.byStatus)}; outbox pending: ${now.outboxPending}`,
        `sink: ${sink.total} request(s), ${sink.unique} distinct webhook-id(s)`,
        `first open deliveries: ${JSON.stringify(stuck)}`,
        ...(options.redis
          ? [
              await jobsInRedis(
                options.redis,
                stuck.map((d) => d.id),
              ),
            ]
          : []),
        ...services.map((s) => `--- ${s.name} ---\n${s.tail(3000)}`),
      ].join('\n');
    },
    250,
  );

  const rows = await db.query<{
    event_id: string;
    attempts: string;
    interrupted: string;
    succeeded: string;
  }>(
    `SELECT d.event_id, count(a.id) AS attempts,
            count(a.id) FILTER (WHERE a.status = 'interrupted') AS interrupted,
            count(a.id) FILTER (WHERE a.status = 'succeeded') AS succeeded
       FROM deliveries d
       JOIN events e ON e.id = d.event_id
       LEFT JOIN delivery_attempts a ON a.delivery_id = d.id
      GROUP BY d.event_id`,
  );
  const committed = new Map(rows.map((r) => [r.event_id, Number(r.attempts)]));
  const answered = results.filter((r) => r.status >= 200 && r.status < 300);
  let unexplained = 0;
  for (const [id, count] of sink.counts) {
    const attempts = committed.get(id);
    if (attempts !== undefined && count > attempts)
      unexplained += count - attempts;
  }
  const sum = (pattern: RegExp) =>
    services.reduce((total, s) => total + s.logSum(pattern), 0);
  const report: FaultReport = {
    test: options.test,
    requests: results.length,
    answered2xx: answered.length,
    committedEvents: committed.size,
    received: sink.total,
    receivedUnique: sink.unique,
    duplicates: sink.duplicates,
    losses: [...committed.keys()].filter((id) => !sink.counts.has(id)).length,
    phantoms: [...sink.counts.keys()].filter((id) => !committed.has(id)).length,
    acknowledgedNotCommitted: answered.filter(
      (r) => !r.eventId || !committed.has(r.eventId),
    ).length,
    unexplained,
    sentTwice: rows.filter((r) => Number(r.succeeded) > 1).length,
    attempts: rows.reduce((n, r) => n + Number(r.attempts), 0),
    interruptedAttempts: rows.reduce((n, r) => n + Number(r.interrupted), 0),
    relayed: sum(/relayed (\d+) job\(s\)/),
    reconciled: sum(/re-enqueued (\d+) delivery job\(s\)/),
    husksRemoved: sum(/removed job \S+: an empty hash/),
  };
  console.log(`FAULT-REPORT ${JSON.stringify(report)}`);
  return report;
}

/** What Bull holds for some deliveries: job hashes and the lists they are in. */
async function jobsInRedis(redis: OwnRedis, deliveryIds: string[]) {
  const client = redis.client();
  const prefix = 'bull:webhook-deliveries';
  try {
    const lines: string[] = [
      `bull: wait ${await client.llen(`${prefix}:wait`)}, active ${await client.llen(`${prefix}:active`)}, ` +
        `delayed ${await client.zcard(`${prefix}:delayed`)}, paused ${await client.llen(`${prefix}:paused`)}`,
    ];
    for (const id of deliveryIds) {
      const keys = await client.keys(`${prefix}:${id}*`);
      for (const key of keys) {
        const jobId = key.slice(prefix.length + 1);
        const job = await client.hgetall(key);
        delete job.data;
        const where: string[] = [];
        for (const list of ['wait', 'active', 'paused']) {
          if ((await client.lpos(`${prefix}:${list}`, jobId)) !== null)
            where.push(list);
        }
        for (const set of ['delayed', 'completed', 'failed']) {
          if ((await client.zscore(`${prefix}:${set}`, jobId)) !== null)
            where.push(set);
        }
        lines.push(
          `redis ${key} in [${where.join(',')}]: ${JSON.stringify(job)}`,
        );
      }
      if (keys.length === 0) lines.push(`redis: no key for delivery ${id}`);
    }
    return lines.join('\n');
  } catch (error) {
    return `redis not readable: ${String(error)}`;
  } finally {
    client.disconnect();
  }
}

/** The pass criterion of every fault spec. */
export function expectNothingLost(report: FaultReport) {
  expect({
    losses: report.losses,
    phantoms: report.phantoms,
    acknowledgedNotCommitted: report.acknowledgedNotCommitted,
    unexplained: report.unexplained,
    sentTwice: report.sentTwice,
  }).toEqual({
    sentTwice: 0,
    losses: 0,
    phantoms: 0,
    acknowledgedNotCommitted: 0,
    unexplained: 0,
  });
  expect(report.receivedUnique).toBe(report.committedEvents);
}
