import request from 'supertest';
import { E2eApp, eventually } from './harness';

/** One delivery with its attempts, as `GET /v1/events/:id/deliveries` returns it. */
export interface DeliveryLog {
  id: string;
  eventId: string;
  endpointId: string;
  status: string;
  attemptCount: number;
  nextAttemptAt: string | null;
  lastStatusCode: number | null;
  lastError: string | null;
  attempts: AttemptLog[];
}

/** One attempt of a delivery, as the API returns it. */
export interface AttemptLog {
  number: number;
  trigger: string;
  status: string;
  statusCode: number | null;
  errorClass: string | null;
  errorMessage: string | null;
  responseBody: string | null;
  responseTruncated: boolean;
  durationMs: number | null;
  nextAttemptAt: string | null;
  startedAt: string;
  finishedAt: string | null;
}

/** The account-scoped calls the delivery specs make, for one API key. */
export function deliveryApi(svc: E2eApp, apiKey: string) {
  const api = () => request(svc.url);
  const auth = { authorization: `Bearer ${apiKey}` };
  const log = async (eventId: string): Promise<DeliveryLog[]> => {
    const res = await api()
      .get(`/v1/events/${eventId}/deliveries`)
      .set(auth)
      .expect(200);
    return res.body.data;
  };
  return {
    api,
    auth,
    /** Creates an endpoint; resolves with its id and signing secret. */
    async createEndpoint(url: string, eventTypes?: string[]) {
      const res = await api()
        .post('/v1/endpoints')
        .set(auth)
        .send({ url, ...(eventTypes ? { eventTypes } : {}) })
        .expect(201);
      return res.body as { id: string; secret: string };
    },
    /** Publishes an event; resolves with the created event (and its delivery count). */
    async publish(type: string, payload: Record<string, unknown> = {}) {
      const res = await api()
        .post('/v1/events')
        .set(auth)
        .send({ type, payload })
        .expect(201);
      return res.body as { id: string; deliveries: number };
    },
    log,
    /** The event's only delivery, once `done` holds for it. */
    async deliveryWhen(
      eventId: string,
      done: (delivery: DeliveryLog) => boolean,
      what: string,
      timeoutMs?: number,
    ): Promise<DeliveryLog> {
      return eventually(
        async () => {
          const [delivery] = await log(eventId);
          return delivery && done(delivery) && delivery;
        },
        what,
        timeoutMs,
      );
    },
  };
}

/**
 * Asserts that `check` keeps holding for `ms` (polling): the way to show that something does
 * NOT happen, e.g. no further attempt after a final outcome.
 */
export async function holdsFor(
  check: () => Promise<boolean> | boolean,
  ms: number,
  what: string,
): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!(await check())) throw new Error(`no longer true: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
