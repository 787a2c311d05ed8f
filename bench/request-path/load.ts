import autocannon from 'autocannon';

/** What one load segment (fixed connections, fixed duration) measured. */
export interface Segment {
  /** Responses with status 201 per second of the segment's wall time. */
  rps: number;
  /** Responses received. */
  responses: number;
  elapsedMs: number;
  /** Per-response latency in ms (autocannon's own timing), sorted ascending. */
  latenciesMs: number[];
}

/** Load settings. */
export interface LoadOptions {
  connections: number;
  durationSec: number;
  /** Requests per second over all connections (a fixed rate, for the probe); default: as fast as possible. */
  overallRate?: number;
  path?: string;
}

/**
 * Loads `POST http://127.0.0.1:<port><path>` with autocannon. Rejects if any response is not
 * 201 or any request failed: a benchmark of failing requests measures nothing.
 */
export function load(port: number, options: LoadOptions): Promise<Segment> {
  const latencies: number[] = [];
  let bad = 0;
  let lastBad = '';
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${port}${options.path ?? '/r'}`,
        method: 'POST',
        connections: options.connections,
        duration: options.durationSec,
        overallRate: options.overallRate,
        timeout: 30,
      },
      (error: Error | null, result: autocannon.Result) => {
        const elapsedMs = performance.now() - started;
        if (error) return reject(error);
        if (bad > 0 || result.errors > 0 || result.timeouts > 0) {
          return reject(
            new Error(
              `load on port ${port}: ${bad} responses not 201 (last: ${lastBad}), ` +
                `${result.errors} errors, ${result.timeouts} timeouts`,
            ),
          );
        }
        latencies.sort((a, b) => a - b);
        resolve({
          rps: latencies.length / (elapsedMs / 1000),
          responses: latencies.length,
          elapsedMs,
          latenciesMs: latencies,
        });
      },
    );
    instance.on(
      'response',
      (_client: unknown, status: number, _bytes: number, ms: number) => {
        if (status === 201) latencies.push(ms);
        else {
          bad++;
          lastBad = String(status);
        }
      },
    );
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
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
