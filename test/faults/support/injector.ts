import Bull from 'bull';
import { DeliveryDiverter } from '../../../src/deliveries/delivery-diverter';
import { EndpointSlots } from '../../../src/deliveries/endpoint-slots';
import type { FaultDatabase } from './fault-database';

/** The event type of ballast rows ({@link DeliveryInjector.inject}). */
export const BALLAST_TYPE = 'load.ballast';

/**
 * Writes deliveries as `POST /v1/events` would (an event and its delivery committed, then a
 * job with the same id and data the service adds, through the service's `DeliveryDiverter`:
 * parked at once while the endpoint's slots are all taken), without going through the API: a
 * load the API of a small machine could not offer. One endpoint, `Bull`'s default prefix.
 */
export class DeliveryInjector {
  private readonly queue: Bull.Queue;
  private readonly diverter: DeliveryDiverter;
  injected = 0;

  constructor(
    private readonly db: Pick<FaultDatabase, 'query'>,
    redisUrl: string,
    private readonly endpointId: string,
    /** The service's `PER_ENDPOINT_CONCURRENCY`. */
    perEndpointConcurrency: number,
  ) {
    this.queue = new Bull('webhook-deliveries', redisUrl);
    // NOTE: parkIfFull reads the limit only; the lease is the worker's business.
    this.diverter = new DeliveryDiverter(
      new EndpointSlots(this.queue.client, perEndpointConcurrency, 0, 'bull'),
    );
  }

  /**
   * Commits `n` events with one delivery each, then enqueues their jobs. Ballast: the same rows,
   * of type {@link BALLAST_TYPE} and due in a day, without jobs: writes that cost what arrivals
   * cost, and that no worker touches during a run (delete them with their events).
   */
  async inject(n: number, ballast = false): Promise<void> {
    if (n <= 0) return;
    const rows = await this.db.query<{ id: string; endpoint_id: string }>(
      `WITH e AS (
         INSERT INTO events (account_id, type, payload)
         SELECT ep.account_id, $3, '{"injected":true}'::json
           FROM endpoints ep, generate_series(1, $2) WHERE ep.id = $1
         RETURNING id, account_id)
       INSERT INTO deliveries (account_id, event_id, endpoint_id, status, next_attempt_at)
       SELECT e.account_id, e.id, $1, 'pending', now() + $4::interval FROM e
       RETURNING id, endpoint_id`,
      [
        this.endpointId,
        n,
        ballast ? BALLAST_TYPE : 'load.injected',
        ballast ? '1 day' : '0',
      ],
    );
    if (ballast) return;
    const jobs = rows.map((r) => ({
      name: '__default__',
      data: { deliveryId: r.id, endpointId: r.endpoint_id },
      opts: {
        jobId: `${r.id}:1`,
        attempts: 1,
        removeOnComplete: true,
        removeOnFail: true,
      },
    }));
    const kept = await this.diverter.divert(jobs);
    if (kept.length > 0) {
      await this.queue.addBulk(
        kept.map(({ data, opts }) => ({ data: data as any, opts })),
      );
    }
    this.injected += rows.length;
  }

  async close() {
    await this.queue.close();
  }
}
