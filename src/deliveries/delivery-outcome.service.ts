import { Inject, Injectable } from '@nestjs/common';
import {
  InjectTransactionAwareQueue,
  TransactionAwareQueue,
  TransactionHost,
  Transactional,
} from 'nestjs-transactional-jobs';
import { APP_CONFIG, AppConfig } from '../config/app-config';
import { Endpoint } from '../endpoints/endpoint.entity';
import {
  RetrySchedule,
  parseRetryAfter,
} from '../webhooks-http/retry-schedule';
import type { SendResult } from '../webhooks-http/send-result';
import type { ClaimedDelivery } from './delivery-claims';
import { storableOrNull, storableText } from './storable-text';
import {
  CLEAR_FAILING_SQL,
  MAX_STORED_RESPONSE,
} from './delivery-batch-outcomes';
import {
  DELIVERY_JOB_OPTIONS,
  DELIVERY_QUEUE,
  DeliveryJob,
  deliveryJobId,
} from './delivery-queue';
import { currentJobContext } from '../observability/job-context';

/** How {@link DeliveryOutcomeService.record} stores an attempt. */
export interface RecordOptions {
  /** The attempt's message when the result carries none. */
  note?: string;
  /** False: store none of what the receiver sent (the fallback when Postgres refused it). */
  keepResponse?: boolean;
  /** The URL the request went to: a 410 disables the endpoint only while it still has it. */
  sentUrl?: string;
}

/** What happened to a delivery after an attempt. */
export type AttemptOutcome =
  | 'succeeded'
  | 'retry_scheduled'
  | 'failed'
  | 'unchanged';

/**
 * Records the result of one attempt: the attempt row, the delivery's new state, the endpoint's
 * health, and the next attempt's job, all in one transaction (the job is enqueued after it).
 */
/** The scheduled attempts of a delivery ($1), the one being recorded included. */
export const SCHEDULED_ATTEMPTS_SQL = `SELECT count(*)::int AS n FROM delivery_attempts
  WHERE delivery_id = $1 AND trigger = 'scheduled'`;

@Injectable()
export class DeliveryOutcomeService {
  private readonly schedule: RetrySchedule;

  constructor(
    private readonly tx: TransactionHost,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectTransactionAwareQueue(DELIVERY_QUEUE)
    private readonly queue: TransactionAwareQueue<DeliveryJob>,
  ) {
    this.schedule = new RetrySchedule({ scheduleMs: config.retryScheduleMs });
  }

  /** Scheduled attempts a delivery gets at most (the length of the retry schedule). */
  get maxAttempts(): number {
    return this.schedule.maxAttempts;
  }

  /**
   * Records one attempt. Everything the receiver sent is stored as safe text (see
   * `storableText`). With `keepResponse: false` nothing the receiver sent is stored or used
   * (body, headers, error text): only the status, with `note` as the attempt's message.
   */
  @Transactional()
  async record(
    claim: ClaimedDelivery,
    sent: SendResult,
    { note, keepResponse = true, sentUrl }: RecordOptions = {},
  ): Promise<AttemptOutcome> {
    const m = this.tx.manager;
    if (!(await this.lockRows(claim))) return 'unchanged';
    const result: SendResult = keepResponse
      ? sent
      : sent.kind === 'response'
        ? { ...sent, headers: {}, body: '' }
        : { ...sent, message: note ?? sent.errorClass };
    const ok =
      result.kind === 'response' && result.status >= 200 && result.status < 300;
    const status =
      result.kind === 'response' ? result.status : (result.status ?? null);
    await m.query(
      `UPDATE delivery_attempts SET status = $2, status_code = $3, duration_ms = $4,
         error_class = $5, error_message = $6, response_body = $7, response_truncated = $8,
         finished_at = now()
       WHERE id = $1`,
      [
        claim.attemptId,
        ok ? 'succeeded' : 'failed',
        status,
        Math.round(result.durationMs),
        result.kind === 'error'
          ? result.errorClass
          : ok
            ? null
            : `http_${status}`,
        storableOrNull(result.kind === 'error' ? result.message : note),
        result.kind === 'response' && keepResponse
          ? storableText(result.body.slice(0, MAX_STORED_RESPONSE))
          : null,
        result.kind === 'response' && keepResponse ? result.truncated : false,
      ],
    );
    const error = ok
      ? null
      : result.kind === 'error'
        ? storableText(result.message)
        : `HTTP ${status}`;
    if (ok) {
      await this.finish(claim, 'succeeded', status, null);
      await m.query(CLEAR_FAILING_SQL, [[claim.endpointId]]);
      return 'succeeded';
    }
    if (status === 410 && (await this.stillAt(claim.endpointId, sentUrl))) {
      await this.disable(claim.endpointId, 'endpoint answered 410 Gone');
      if (claim.trigger === 'manual') {
        await this.finishManual(claim, status, error);
        return 'unchanged';
      }
      await this.finish(claim, 'failed', status, error);
      return 'failed';
    }
    await this.noteFailure(claim.endpointId);
    if (claim.trigger === 'manual') {
      await this.finishManual(claim, status, error);
      return 'unchanged';
    }
    const delay = this.schedule.nextDelay(await this.scheduledAttempts(claim), {
      retryAfterMs:
        result.kind === 'response'
          ? parseRetryAfter(result.headers['retry-after'])
          : null,
      minimumNextStep:
        status === 429 ||
        (result.kind === 'error' && result.errorClass === 'timeout'),
    });
    if (delay === null) {
      await this.finish(claim, 'failed', status, error);
      return 'failed';
    }
    const nextAttemptAt = new Date(Date.now() + delay);
    await this.finish(claim, 'pending', status, error, nextAttemptAt);
    await m.update(
      'delivery_attempts',
      { id: claim.attemptId },
      { nextAttemptAt },
    );
    // NOTE: the next attempt goes on with the trace and request id of this one.
    await this.queue.add(
      {
        deliveryId: claim.id,
        endpointId: claim.endpointId,
        context: currentJobContext(),
      },
      {
        ...DELIVERY_JOB_OPTIONS,
        delay,
        jobId: deliveryJobId(claim.id, claim.attemptNumber + 1),
      },
    );
    return 'retry_scheduled';
  }

  /** A delivery whose endpoint is disabled fails without a request (it can be replayed). */
  @Transactional()
  async recordDisabled(claim: ClaimedDelivery): Promise<AttemptOutcome> {
    if (!(await this.lockRows(claim))) return 'unchanged';
    const message =
      'the endpoint is disabled; enable it, then replay the delivery';
    await this.tx.manager.query(
      `UPDATE delivery_attempts SET status = 'failed', duration_ms = 0,
         error_class = 'endpoint_disabled', error_message = $2, finished_at = now()
       WHERE id = $1`,
      [claim.attemptId, message],
    );
    if (claim.trigger === 'manual') {
      await this.finishManual(claim, null, message);
      return 'unchanged';
    }
    await this.finish(claim, 'failed', null, message);
    return 'failed';
  }

  /**
   * Locks the endpoint, then the delivery, before the attempt is written: the order in which
   * deleting an endpoint locks them (endpoint, then its deliveries and their attempts by
   * cascade), so the two never deadlock. False when the endpoint or the delivery is gone
   * (deleted meanwhile): there is nothing left to record and no next attempt to schedule.
   */
  private async lockRows(claim: ClaimedDelivery): Promise<boolean> {
    const m = this.tx.manager;
    const endpoint: unknown[] = await m.query(
      'SELECT 1 FROM endpoints WHERE id = $1 FOR NO KEY UPDATE',
      [claim.endpointId],
    );
    if (endpoint.length === 0) return false;
    const delivery: unknown[] = await m.query(
      'SELECT 1 FROM deliveries WHERE id = $1 FOR UPDATE',
      [claim.id],
    );
    return delivery.length > 0;
  }

  /**
   * The scheduled attempts of the claim's delivery, this one included: the retry schedule
   * counts those alone (a manual attempt is one more, on top of the schedule), as the attempt
   * limit at claim time does. Not `attemptNumber`, which counts manual attempts too.
   */
  private async scheduledAttempts(claim: ClaimedDelivery): Promise<number> {
    const [row]: { n: number }[] = await this.tx.manager.query(
      SCHEDULED_ATTEMPTS_SQL,
      [claim.id],
    );
    return row.n;
  }

  /**
   * A manual attempt that did not succeed is one attempt more, outside the schedule: the
   * delivery goes back to the status it had when it was claimed, and its next scheduled attempt
   * (`next_attempt_at`, which the claim left alone) is kept as it is: a pending delivery without
   * one would never be sent again, nor failed.
   */
  private finishManual(
    claim: ClaimedDelivery,
    statusCode: number | null,
    error: string | null,
  ) {
    return this.finish(claim, claim.previousStatus, statusCode, error, 'keep');
  }

  private async finish(
    claim: ClaimedDelivery,
    status: string,
    statusCode: number | null,
    error: string | null,
    nextAttemptAt: Date | null | 'keep' = null,
  ) {
    const final = status === 'succeeded' || status === 'failed';
    const keep = nextAttemptAt === 'keep';
    await this.tx.manager.query(
      `UPDATE deliveries SET status = $2, last_status_code = $3, last_error = $4,
         next_attempt_at = CASE WHEN $7 THEN next_attempt_at ELSE $5 END,
         locked_until = NULL, updated_at = now(),
         completed_at = CASE WHEN $6 THEN now() ELSE completed_at END
       WHERE id = $1`,
      [
        claim.id,
        status,
        statusCode,
        error,
        keep ? null : nextAttemptAt,
        final,
        keep,
      ],
    );
  }

  /**
   * Whether the endpoint still has the URL a request went to (locked by `lockRows`): a 410 from
   * a URL it was moved away from says nothing about the endpoint.
   */
  private async stillAt(
    endpointId: string,
    sentUrl?: string,
  ): Promise<boolean> {
    if (sentUrl === undefined) return true;
    const [row]: { url: string }[] = await this.tx.manager.query(
      'SELECT url FROM endpoints WHERE id = $1',
      [endpointId],
    );
    return row?.url === sentUrl;
  }

  /** Starts the failure run, or disables the endpoint when it has failed for too long. */
  private async noteFailure(endpointId: string) {
    const [rows] = await this.tx.manager.query(
      `UPDATE endpoints SET failing_since = COALESCE(failing_since, now())
       WHERE id = $1 RETURNING failing_since`,
      [endpointId],
    );
    const since: Date | undefined = rows[0]?.failing_since;
    if (
      since &&
      Date.now() - since.getTime() >= this.config.endpointDisableAfterMs
    ) {
      await this.disable(
        endpointId,
        `every delivery failed since ${since.toISOString()}`,
      );
    }
  }

  private async disable(endpointId: string, reason: string) {
    await this.tx.manager.update(
      Endpoint,
      { id: endpointId },
      { disabled: true, disabledReason: reason },
    );
  }
}
