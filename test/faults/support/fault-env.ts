import { createFaultDatabase, FaultDatabase } from './fault-database';
import { OwnRedis, startOwnRedis } from './own-redis';
import { ServiceProcess } from './service-process';
import { Sink } from './sink';

/**
 * Everything one fault spec owns: its database (`webhooks_fault_<name><TEST_DB_SUFFIX>`), its redis-server,
 * the sink, and the service processes it starts. `close()` kills and drops all of it, also
 * after a failed or partial set-up.
 */
export class FaultEnv {
  db!: FaultDatabase;
  redis!: OwnRedis;
  sink!: Sink;
  readonly services: ServiceProcess[] = [];

  private constructor(readonly name: string) {}

  /** Creates the database, starts Redis and the sink. */
  static async create(name: string): Promise<FaultEnv> {
    const env = new FaultEnv(name);
    try {
      env.db = await createFaultDatabase(
        `webhooks_fault_${name}${process.env.TEST_DB_SUFFIX ?? ''}`,
      );
      env.redis = await startOwnRedis();
      env.sink = await Sink.start();
    } catch (error) {
      await env.close();
      throw error;
    }
    return env;
  }

  /** The env every service process of this spec gets (database, Redis). */
  serviceEnv(extra: Record<string, string> = {}): Record<string, string> {
    return {
      DATABASE_URL: this.db.url,
      REDIS_URL: this.redis.url,
      ...extra,
    };
  }

  /** Starts a service process on this spec's database and Redis; resolves once it is ready. */
  async start(
    name: string,
    extra: Record<string, string> = {},
  ): Promise<ServiceProcess> {
    const svc = await ServiceProcess.start(name, this.serviceEnv(extra));
    this.services.push(svc);
    return svc;
  }

  /** Kills every process, closes the sink, stops Redis, drops the database. */
  async close() {
    const errors: unknown[] = [];
    const attempt = async (fn?: () => Promise<unknown>) => {
      try {
        await fn?.();
      } catch (error) {
        errors.push(error);
      }
    };
    await Promise.all(this.services.map((s) => attempt(() => s.stop())));
    await attempt(() => this.sink?.close());
    await attempt(() => this.redis?.stop());
    await attempt(() => this.db?.drop());
    if (errors.length > 0) throw errors[0];
  }
}
