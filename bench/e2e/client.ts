import { Agent, request } from 'http';

/** A keep-alive JSON client for the service's API. */
export class ApiClient {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 128 });

  constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {}

  post(path: string, body: unknown): Promise<{ status: number; body: any }> {
    const data = JSON.stringify(body);
    const url = new URL(path, this.baseUrl);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          agent: this.agent,
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: 'POST',
          headers: {
            authorization: `Bearer ${this.token}`,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(data),
          },
          timeout: 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString();
            let parsed: any = text;
            try {
              parsed = JSON.parse(text);
            } catch {
              // kept as text
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end(data);
    });
  }

  close() {
    this.agent.destroy();
  }
}

/** One accepted request: the event it created and when its answer arrived. */
export interface Sent {
  eventId: string;
  answeredAt: number;
  /** Endpoint keys (receiver path segments) the event goes to. */
  endpoints: string[];
}

/**
 * Sends `make(i)` requests at `ratePerSec` (open loop: a request is started on schedule
 * whatever the answers) for `durationMs`, or `total` requests as fast as `concurrency` allows
 * (closed loop) when no rate is given.
 */
export async function drive(opts: {
  send: (i: number) => Promise<Sent | undefined>;
  ratePerSec?: number;
  durationMs?: number;
  total?: number;
  concurrency?: number;
}): Promise<{ sent: Sent[]; errors: number; elapsedMs: number }> {
  const sent: Sent[] = [];
  let errors = 0;
  const started = Date.now();
  const one = async (i: number) => {
    try {
      const s = await opts.send(i);
      if (s) sent.push(s);
      else errors++;
    } catch {
      errors++;
    }
  };
  if (opts.ratePerSec) {
    const inFlight = new Set<Promise<void>>();
    const end = started + (opts.durationMs ?? 10_000);
    let i = 0;
    while (Date.now() < end) {
      const due = started + (i * 1000) / opts.ratePerSec;
      const wait = due - Date.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const p: Promise<void> = one(i++).then(() => {
        inFlight.delete(p);
      });
      inFlight.add(p);
      if (inFlight.size > 2000) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
  } else {
    let next = 0;
    const total = opts.total ?? 0;
    await Promise.all(
      Array.from({ length: opts.concurrency ?? 32 }, async () => {
        while (next < total) await one(next++);
      }),
    );
  }
  return { sent, errors, elapsedMs: Date.now() - started };
}

/** Percentile of sorted numbers (nearest rank). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const k = Math.min(
    sorted.length - 1,
    Math.ceil((p / 100) * sorted.length) - 1,
  );
  return sorted[Math.max(0, k)];
}
