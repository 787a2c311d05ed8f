import { Client } from 'pg';
import {
  createFaultDatabase,
  FaultDatabase,
} from '../../test/faults/support/fault-database';
import { OwnRedis, startOwnRedis } from '../../test/faults/support/own-redis';
import {
  FAULT_ADMIN_TOKEN,
  ServiceProcess,
} from '../../test/faults/support/service-process';
import { ApiClient, percentile, Sent } from './client';
import { CpuMeter } from './cpu';
import { VerifyingReceiver } from './receiver';

/** The service's defaults, over the fault harness's short test intervals. */
export const DEFAULT_ENV: Record<string, string> = {
  WORKER_CONCURRENCY: '20',
  PER_ENDPOINT_CONCURRENCY: '4',
  WEBHOOK_RETRY_SCHEDULE_MS:
    '0,5000,300000,1800000,7200000,18000000,36000000,50400000,72000000,86400000',
  WEBHOOK_TIMEOUT_MS: '15000',
  RECONCILE_INTERVAL_MS: '30000',
  BULL_STALLED_INTERVAL_MS: '30000',
  OUTBOX_GRACE_MS: '5000',
  OUTBOX_POLL_INTERVAL_MS: '1000',
  // NOTE: empty is unset: the service's default (the fault harness's FAST_ENV turns it off).
  API_SHED_LOOP_UTILIZATION: '',
};

/** One service under test on a fresh database and redis-server, with its tenant. */
export class Scenario {
  services: ServiceProcess[] = [];
  client!: ApiClient;
  /** Clients `delay()` takes turns with (`useApis`); none: `client`. */
  private spread: ApiClient[] = [];
  tripIds: string[] = [];
  endpoints: string[] = [];
  cpu!: CpuMeter;
  private admin!: Client;

  private constructor(
    readonly db: FaultDatabase,
    readonly redis: OwnRedis,
    readonly receiver: VerifyingReceiver,
    readonly buildDir: string,
    readonly extraEnv: Record<string, string>,
  ) {}

  static async create(
    receiver: VerifyingReceiver,
    buildDir: string,
    extraEnv: Record<string, string> = {},
  ): Promise<Scenario> {
    const db = await createFaultDatabase(
      `webhooks_bench_e2e${process.env.TEST_DB_SUFFIX ?? ''}`,
    );
    const redis = await startOwnRedis();
    const s = new Scenario(db, redis, receiver, buildDir, extraEnv);
    s.admin = new Client({
      connectionString: new URL('/postgres', db.url).toString(),
    });
    await s.admin.connect();
    s.cpu = new CpuMeter(
      s.admin,
      db.name,
      () => s.services.filter((x) => x.running).map((x) => x.pid!),
      redis.pid!,
    );
    return s;
  }

  async start(name: string, env: Record<string, string>) {
    process.env.FAULT_APP_BUILD = this.buildDir;
    const svc = await ServiceProcess.start(name, {
      DATABASE_URL: this.db.url,
      REDIS_URL: this.redis.url,
      ...DEFAULT_ENV,
      ...this.extraEnv,
      ...env,
    });
    this.services.push(svc);
    return svc;
  }

  /** An account, 20 trips, then `n` endpoints `e0..` each taking `trip.delayed` and `bench.eI`. */
  async tenant(apiUrl: string, n: number) {
    const admin = new ApiClient(apiUrl, FAULT_ADMIN_TOKEN);
    const account = await admin.post('/v1/accounts', { name: 'bench' });
    admin.close();
    if (account.status !== 201) throw new Error(JSON.stringify(account));
    this.client = new ApiClient(apiUrl, account.body.apiKey);
    for (let i = 0; i < 20; i++) {
      const trip = await this.client.post('/v1/trips', {
        reference: `B-${i}`,
        origin: 'Lyon',
        destination: 'Turin',
        plannedArrival: '2026-12-01T10:00:00Z',
      });
      this.tripIds.push(trip.body.id);
    }
    for (let i = 0; i < n; i++) {
      const key = `${Date.now().toString(36)}e${i}`;
      const ep = await this.client.post('/v1/endpoints', {
        url: this.receiver.url(key),
        eventTypes: ['trip.delayed', `bench.e${i}`],
      });
      if (ep.status !== 201) throw new Error(JSON.stringify(ep));
      this.receiver.secretFor(key, ep.body.secret);
      this.endpoints.push(key);
    }
  }

  /** Points the client at another process (the API moved). */
  useApi(url: string) {
    const token = (this.client as unknown as { token: string }).token;
    this.client.close();
    this.client = new ApiClient(url, token);
  }

  /**
   * Spreads `delay()` over several API processes (request i goes to `urls[i % n]`), as a load
   * balancer in front of them would.
   */
  useApis(urls: string[]) {
    const token = (this.client as unknown as { token: string }).token;
    for (const c of this.spread) c.close();
    this.spread = urls.map((url) => new ApiClient(url, token));
  }

  /** POST a delay: one `trip.delayed` event, delivered to every endpoint. */
  async delay(i: number): Promise<Sent | undefined> {
    const client =
      this.spread.length > 0
        ? this.spread[i % this.spread.length]
        : this.client;
    const res = await client.post(
      `/v1/trips/${this.tripIds[i % this.tripIds.length]}/delays`,
      { minutes: 1, reason: `bench ${i}` },
    );
    if (res.status !== 201) return undefined;
    return {
      eventId: res.body.event.id,
      answeredAt: Date.now(),
      endpoints: this.endpoints,
    };
  }

  /** POST an event of type `bench.eK`: delivered to endpoint K only. */
  async eventFor(k: number): Promise<Sent | undefined> {
    const res = await this.client.post('/v1/events', {
      type: `bench.e${k}`,
      payload: { n: k },
    });
    if (res.status !== 201) return undefined;
    return {
      eventId: res.body.id,
      answeredAt: Date.now(),
      endpoints: [this.endpoints[k]],
    };
  }

  /** Waits until every delivery of `sent` arrived or `timeoutMs` passed; returns how many arrived. */
  async waitDelivered(sent: Sent[], timeoutMs: number): Promise<number> {
    const keys = sent.flatMap((s) =>
      s.endpoints.map((e) => `${s.eventId}/${e}`),
    );
    const deadline = Date.now() + timeoutMs;
    let missing = keys;
    while (Date.now() < deadline) {
      missing = missing.filter((k) => !this.receiver.arrivals.has(k));
      if (missing.length === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    return (
      keys.length - missing.filter((k) => !this.receiver.arrivals.has(k)).length
    );
  }

  /** Answer-to-receiver latencies (ms) of `sent`'s deliveries; missing ones are Infinity. */
  latencies(sent: Sent[]): number[] {
    return sent
      .flatMap((s) =>
        s.endpoints.map((e) => {
          const at = this.receiver.arrivals.get(`${s.eventId}/${e}`);
          return at === undefined ? Infinity : Math.max(0, at - s.answeredAt);
        }),
      )
      .sort((a, b) => a - b);
  }

  async close() {
    for (const s of this.services)
      await s.kill('SIGTERM', 20_000).catch(() => undefined);
    for (const s of this.services) await s.stop().catch(() => undefined);
    this.client?.close();
    for (const c of this.spread) c.close();
    await this.admin?.end().catch(() => undefined);
    await this.redis.stop().catch(() => undefined);
    await this.db.drop().catch(() => undefined);
  }
}

/** p50/p95/p99 of sorted latencies, with Infinity shown as null (never arrived). */
export function quantiles(sorted: number[]) {
  const q = (p: number) => {
    const v = percentile(sorted, p);
    return Number.isFinite(v) ? Math.round(v) : null;
  };
  return { p50: q(50), p95: q(95), p99: q(99) };
}
