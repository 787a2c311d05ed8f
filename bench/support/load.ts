import http from 'http';

/** What one segment (a fixed number of requests at a fixed concurrency) measured. */
export interface SegmentResult {
  requests: number;
  elapsedMs: number;
  /** Requests per second over the segment's wall time. */
  rps: number;
  /** Per-request latencies in ms, sorted ascending. */
  latenciesMs: number[];
}

/**
 * Sends `total` POST requests to `path`, `concurrency` at a time, over the keep-alive `agent`,
 * and times each one from request start to the end of the response body. Rejects on the first
 * error or unexpected status: a benchmark of failing requests measures nothing.
 */
export async function runSegment(
  agent: http.Agent,
  port: number,
  path: string,
  total: number,
  concurrency: number,
): Promise<SegmentResult> {
  const latencies: number[] = new Array(total);
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, total) }, async () => {
      while (next < total) {
        const index = next++;
        const t0 = process.hrtime.bigint();
        await post(agent, port, path);
        latencies[index] = Number(process.hrtime.bigint() - t0) / 1e6;
      }
    }),
  );
  const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
  latencies.sort((a, b) => a - b);
  return {
    requests: total,
    elapsedMs,
    rps: total / (elapsedMs / 1000),
    latenciesMs: latencies,
  };
}

function post(agent: http.Agent, port: number, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        agent,
        headers: { 'content-length': '0' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          if (res.statusCode !== 201) {
            reject(
              new Error(
                `POST ${path} answered ${res.statusCode}: ${Buffer.concat(chunks).toString()}`,
              ),
            );
          } else resolve();
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Median of unsorted numbers. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
