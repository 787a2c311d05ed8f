import { readFileSync } from 'fs';
import { Client } from 'pg';

const TICK_MS = 10; // USER_HZ = 100 on Linux

/** utime + stime of a process in ms (0 once it is gone). */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return 0;
  }
}

/** The backends of one database (the service's pool connections). */
export async function backendPids(
  admin: Client,
  database: string,
): Promise<number[]> {
  const { rows } = await admin.query(
    'SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
    [database],
  );
  return rows.map((r: { pid: number }) => r.pid);
}

/** CPU of the service, its Postgres backends and its Redis between `start()` and `stop()`. */
export class CpuMeter {
  private start = new Map<string, number>();

  constructor(
    private readonly admin: Client,
    private readonly database: string,
    private readonly servicePids: () => number[],
    private readonly redisPid: number,
  ) {}

  private async sample(): Promise<Map<string, number>> {
    const m = new Map<string, number>();
    for (const pid of this.servicePids()) m.set(`s${pid}`, cpuMs(pid));
    for (const pid of await backendPids(this.admin, this.database))
      m.set(`p${pid}`, cpuMs(pid));
    m.set(`r${this.redisPid}`, cpuMs(this.redisPid));
    return m;
  }

  async begin() {
    this.start = await this.sample();
  }

  /** ms of CPU per kind since `begin()`. */
  async end(): Promise<{ service: number; postgres: number; redis: number }> {
    const now = await this.sample();
    const sum = { service: 0, postgres: 0, redis: 0 };
    for (const [key, value] of now) {
      const delta = value - (this.start.get(key) ?? 0);
      const kind =
        key[0] === 's' ? 'service' : key[0] === 'p' ? 'postgres' : 'redis';
      sum[kind] += Math.max(0, delta);
    }
    return sum;
  }
}
