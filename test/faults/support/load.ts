import { FAULT_ADMIN_TOKEN } from './service-process';
import { sleep } from './cleanup';

/** An account with trips and one endpoint pointing at the sink. */
export interface Tenant {
  apiKey: string;
  tripIds: string[];
  endpointId: string;
}

async function post(
  url: string,
  token: string,
  body: unknown,
): Promise<{ status: number; body: any }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  let parsed: any = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: kept as text
  }
  return { status: res.status, body: parsed };
}

async function expectCreated(
  what: string,
  call: Promise<{ status: number; body: any }>,
) {
  const res = await call;
  if (res.status !== 201) {
    throw new Error(
      `${what} answered ${res.status}: ${JSON.stringify(res.body)}`,
    );
  }
  return res.body;
}

/**
 * Creates an account, `trips` trips, then one endpoint for the sink. The trips come first, so
 * their `trip.created` events have no deliveries: every delivery is one of the load's delays.
 */
export async function setUpTenant(
  baseUrl: string,
  sinkUrl: string,
  trips = 20,
): Promise<Tenant> {
  const account = await expectCreated(
    'POST /v1/accounts',
    post(`${baseUrl}/v1/accounts`, FAULT_ADMIN_TOKEN, { name: 'fault' }),
  );
  const apiKey: string = account.apiKey;
  const tripIds: string[] = [];
  for (let i = 0; i < trips; i++) {
    const trip = await expectCreated(
      'POST /v1/trips',
      post(`${baseUrl}/v1/trips`, apiKey, {
        reference: `F-${Date.now()}-${i}`,
        origin: 'Lyon',
        destination: 'Turin',
        plannedArrival: '2026-12-01T10:00:00Z',
      }),
    );
    tripIds.push(trip.id);
  }
  const endpoint = await expectCreated(
    'POST /v1/endpoints',
    post(`${baseUrl}/v1/endpoints`, apiKey, { url: sinkUrl }),
  );
  return { apiKey, tripIds, endpointId: endpoint.id };
}

/** What became of one request of a load. */
export interface LoadResult {
  index: number;
  /** HTTP status, or 0 when no response came (connection refused or reset, timeout). */
  status: number;
  /** The event of a 2xx answer. */
  eventId?: string;
  /** The error of a request without response, or the body of a non-2xx one. */
  error?: string;
  /** When it was sent (epoch ms) and how long it took. */
  startedAt: number;
  ms: number;
  /** Times its connection was refused before this outcome (see `retryRefusedForMs`). */
  refused: number;
}

/** Options of `startLoad`. */
export interface LoadOptions {
  tenant: Tenant;
  /** Base URL the `index`-th request goes to. */
  baseUrl: (index: number) => string;
  /** Requests to send; `Infinity` until `stop()`. */
  total: number;
  /** Requests in flight at most. */
  concurrency: number;
  /** Requests started per second at most (open loop, up to `concurrency`). Default: no pacing. */
  ratePerSec?: number;
  /**
   * A refused connection never reached the service, so it is safe to send again: for this
   * long after a refusal the request is retried (the service is restarting). Default 0.
   */
  retryRefusedForMs?: number;
  /** Called after each request is settled, with the number settled so far. */
  onSettled?: (settled: number) => void;
}

/** A running load of `POST /v1/trips/:id/delays` requests. */
export interface Load {
  readonly results: LoadResult[];
  /** Resolves when every request is settled. */
  readonly done: Promise<LoadResult[]>;
  /** Sends no new requests; resolves when those in flight are settled. */
  stop(): Promise<LoadResult[]>;
}

function isRefused(error: unknown): boolean {
  const cause = (error as { cause?: { code?: string } })?.cause;
  return cause?.code === 'ECONNREFUSED';
}

/** Starts a load with bounded concurrency; records which requests answered 2xx. */
export function startLoad(options: LoadOptions): Load {
  const { tenant, total, concurrency } = options;
  const results: LoadResult[] = [];
  let next = 0;
  let stopped = false;

  const send = async (index: number): Promise<LoadResult> => {
    const tripId = tenant.tripIds[index % tenant.tripIds.length];
    const started = Date.now();
    const refusedUntil = started + (options.retryRefusedForMs ?? 0);
    let refused = 0;
    for (;;) {
      try {
        const res = await post(
          `${options.baseUrl(index)}/v1/trips/${tripId}/delays`,
          tenant.apiKey,
          { minutes: 1, reason: `load ${index}` },
        );
        const ok = res.status >= 200 && res.status < 300;
        return {
          index,
          status: res.status,
          eventId: ok ? res.body?.event?.id : undefined,
          error: ok ? undefined : JSON.stringify(res.body),
          startedAt: started,
          ms: Date.now() - started,
          refused,
        };
      } catch (error) {
        if (isRefused(error) && Date.now() < refusedUntil && !stopped) {
          refused++;
          await sleep(100);
          continue;
        }
        const cause = (error as { cause?: { code?: string } })?.cause;
        return {
          index,
          status: 0,
          error: `${String(error)}${cause?.code ? ` (${cause.code})` : ''}`,
          startedAt: started,
          ms: Date.now() - started,
          refused,
        };
      }
    }
  };

  const inFlight = new Set<Promise<void>>();
  const dispatch = async () => {
    const gapMs = options.ratePerSec ? 1000 / options.ratePerSec : 0;
    while (!stopped && next < total) {
      if (inFlight.size >= concurrency) {
        await Promise.race(inFlight);
        continue;
      }
      const run: Promise<void> = send(next++).then((result) => {
        results.push(result);
        inFlight.delete(run);
        options.onSettled?.(results.length);
      });
      inFlight.add(run);
      if (gapMs) await sleep(gapMs);
    }
    await Promise.all(inFlight);
    return results;
  };

  const done = dispatch();
  return {
    results,
    done,
    stop() {
      stopped = true;
      return done;
    },
  };
}

/** Counts of a load's results, for messages. */
export function summarize(results: LoadResult[]) {
  const byStatus: Record<string, number> = {};
  for (const r of results) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
  return byStatus;
}
