import type { JobOptions } from 'bull';
import type { JobContext } from '../observability/job-context';

/** Name of the Bull queue that schedules delivery attempts. */
export const DELIVERY_QUEUE = 'webhook-deliveries';

/**
 * A delivery job carries the delivery id (everything else is loaded from Postgres) and the
 * context of the code that queued it, for logs and traces.
 */
export interface DeliveryJob {
  deliveryId: string;
  /**
   * The delivery's endpoint: the worker takes (or waits for) a slot of it before reading
   * Postgres. Jobs enqueued by earlier versions lack it; the worker then looks it up.
   */
  endpointId?: string;
  /** `manual` for an operator's resend: one attempt, never retried automatically. */
  trigger?: 'scheduled' | 'manual';
  /**
   * Recover: the delivery's attempt count when it was found failed; the job sends it only if
   * it is still failed with that count (see `claimDelivery`).
   */
  onlyIfFailedAt?: number;
  /**
   * A parked job handed back to the queue: its place in its endpoint's line of parked jobs. If it
   * finds every slot of the endpoint taken again, it is parked at that place, ahead of the jobs
   * that arrived after it.
   */
  parkPlace?: number;
  /** A manual job waiting for the delivery's lease: when it first found it held (ms). */
  busySince?: number;
  /** The request id and trace context of the request (or job) that queued it, if any. */
  context?: JobContext;
}

/**
 * Job options of every delivery job. Completed and failed jobs are removed so that a job id
 * can be enqueued again by the reconciler; the attempt log lives in Postgres.
 */
export const DELIVERY_JOB_OPTIONS: JobOptions = {
  attempts: 1,
  removeOnComplete: true,
  removeOnFail: true,
};

/** Job id of the scheduled job for attempt `attempt` of a delivery (Bull de-duplicates it). */
export function deliveryJobId(deliveryId: string, attempt: number): string {
  return `${deliveryId}:${attempt}`;
}
