import Bull from 'bull';
import type { FaultDatabase } from './fault-database';

/**
 * Writes deliveries as `POST /v1/events` would (an event and its delivery committed, then a
 * job with the same id and data the service adds), without going through the API: a load the
 * API of a small machine could not offer. One endpoint, `Bull`'s default prefix.
 */
export class DeliveryInjector {
  private readonly queue: Bull.Queue;
  injected = 0;

  constructor(
    private readonly db: Pick<FaultDatabase, 'query'>,
    redisUrl: string,
    private readonly endpointId: string,
  ) {
    this.queue = new Bull('webhook-deliveries', redisUrl);
  }

  /** Commits `n` events with one delivery each, then enqueues their jobs. */
  async inject(n: number): Promise<void> {
    if (n <= 0) return;
    const rows = await this.db.query<{ id: string; endpoint_id: string }>(
      `WITH e AS (
         INSERT INTO events (account_id, type, payload)
         SELECT ep.account_id, 'load.injected', '{"injected":true}'::json
           FROM endpoints ep, generate_series(1, $2) WHERE ep.id = $1
         RETURNING id, account_id)
       INSERT INTO deliveries (account_id, event_id, endpoint_id, status, next_attempt_at)
       SELECT e.account_id, e.id, $1, 'pending', now() FROM e
       RETURNING id, endpoint_id`,
      [this.endpointId, n],
    );
    await this.queue.addBulk(
      rows.map((r) => ({
        data: { deliveryId: r.id, endpointId: r.endpoint_id },
        opts: {
          jobId: `${r.id}:1`,
          attempts: 1,
          removeOnComplete: true,
          removeOnFail: true,
        },
      })),
    );
    this.injected += rows.length;
  }

  async close() {
    await this.queue.close();
  }
}
