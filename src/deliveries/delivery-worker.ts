import { InjectQueue } from '@nestjs/bull';
import {
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
} from '@nestjs/common';
import type { Job, Queue } from 'bull';
import { TransactionHost } from 'nestjs-transactional-jobs';
import { APP_CONFIG, AppConfig } from '../config/app-config';
import { activeSecrets, openSecrets } from '../endpoints/endpoint-secrets';
import { SecretBox } from '../secrets/secret-box';
import { Endpoint } from '../endpoints/endpoint.entity';
import { StoredEvent, toStoredEvent } from '../events/stored-event';
import { RawJson } from '../http/raw-json';
import {
  buildHeaders,
  unixSeconds,
} from '../webhooks-http/standard-webhooks-signer';
import type { SendResult } from '../webhooks-http/send-result';
import { SSRF_HINT } from '../webhooks-http/ssrf-guard';
import { WebhookSender } from '../webhooks-http/webhook-sender';
import { ClaimedDelivery, claimDelivery } from './delivery-claims';
import { DeliveryStats } from './delivery-stats';
import {
  AttemptOutcome,
  DeliveryOutcomeService,
} from './delivery-outcome.service';
import {
  DELIVERY_JOB_OPTIONS,
  DELIVERY_QUEUE,
  DeliveryJob,
} from './delivery-queue';
import { EndpointLimiter } from './endpoint-limiter';
import { DeliveryObservability } from '../observability/delivery-observability';

/** How long a job waits before trying again when its endpoint is at its concurrency limit. */
const ENDPOINT_BUSY_DELAY_MS = 500;

/** How long a manual job waits before trying again when the delivery is being sent. */
const DELIVERY_BUSY_DELAY_MS = 250;

/**
 * The exact bytes sent (and signed) for an event: the same on every attempt, with the
 * payload as the JSON text it was accepted as.
 */
export function webhookBody(event: StoredEvent): string {
  return RawJson.object({
    type: event.type,
    timestamp: event.createdAt.toISOString(),
    data: new RawJson(event.payloadText),
  }).text;
}

/**
 * The Bull worker that sends deliveries: claim in Postgres (idempotent), take a slot of the
 * endpoint's concurrency, sign and send, record the attempt and schedule the next one.
 */
@Injectable()
export class DeliveryWorker implements OnApplicationBootstrap {
  private readonly logger = new Logger(DeliveryWorker.name);
  private readonly limiter: EndpointLimiter;
  private readonly leaseMs: number;
  private processing = false;
  /** The jobs this process is handling now. */
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(
    @InjectQueue(DELIVERY_QUEUE) private readonly queue: Queue<DeliveryJob>,
    private readonly tx: TransactionHost,
    private readonly sender: WebhookSender,
    private readonly outcomes: DeliveryOutcomeService,
    private readonly stats: DeliveryStats,
    private readonly box: SecretBox,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly observability: DeliveryObservability,
  ) {
    this.leaseMs = config.deliveryTimeoutMs + config.deliveryLeaseMarginMs;
    this.limiter = new EndpointLimiter(
      queue.client,
      config.perEndpointConcurrency,
      this.leaseMs,
      config.bullPrefix,
    );
  }

  onApplicationBootstrap() {
    if (this.config.role === 'api') return;
    this.processing = true;
    void this.queue.process(this.config.workerConcurrency, (job) => {
      const handling = this.observability.runJob(job, () => this.handle(job));
      const settled = handling.catch(() => undefined);
      this.inFlight.add(settled);
      void settled.then(() => this.inFlight.delete(settled));
      return handling;
    });
  }

  /**
   * Takes no new job in this process (other workers go on); resolves once the jobs in progress
   * have finished: their attempt sent, its outcome recorded and the job completed in Bull.
   */
  async stop(): Promise<void> {
    if (!this.processing) return;
    this.processing = false;
    this.logger.log(
      `stopping: waiting for ${this.inFlight.size} delivery job(s) in flight`,
    );
    // NOTE: a local pause: Bull stops fetching (also the next job it would take on
    // completion) and resolves when the jobs it is processing are done.
    const paused = this.queue.pause(true).catch((error: unknown) => {
      this.logger.warn(`pausing the queue failed: ${String(error)}`);
    });
    await Promise.all([paused, ...this.inFlight]);
  }

  /** Processes one job; never throws for delivery failures (they are recorded instead). */
  async handle(
    job: Job<DeliveryJob>,
  ): Promise<AttemptOutcome | 'skipped' | 'deferred' | 'unrecorded'> {
    const { deliveryId } = job.data;
    const trigger = job.data.trigger ?? 'scheduled';
    const endpointId = await this.endpointOf(deliveryId, trigger);
    if (!endpointId) return 'skipped';
    const slot = `${job.id}:${process.pid}`;
    if (!(await this.limiter.acquire(endpointId, slot))) {
      const delay =
        ENDPOINT_BUSY_DELAY_MS +
        Math.floor(Math.random() * ENDPOINT_BUSY_DELAY_MS);
      // NOTE: a delivery left due in Postgres looks lost to the reconciler, which would add
      // another job for it every round while this one keeps waiting for a slot.
      await this.tx.manager.query(
        `UPDATE deliveries
            SET next_attempt_at = now() + make_interval(secs => $2::float8 / 1000)
          WHERE id = $1 AND status = 'pending'`,
        [deliveryId, delay],
      );
      await this.queue.add(job.name, job.data, {
        ...DELIVERY_JOB_OPTIONS,
        delay,
        jobId: `${String(job.id).split('~')[0]}~${Date.now()}`,
      });
      return 'deferred';
    }
    try {
      const claimed = await this.tx.withTransaction(() =>
        claimDelivery(
          this.tx.manager,
          deliveryId,
          trigger,
          this.leaseMs,
          this.outcomes.maxAttempts,
          job.data.onlyIfFailedAt,
        ),
      );
      if (claimed.kind === 'busy') {
        return trigger === 'manual' ? this.deferManual(job) : 'skipped';
      }
      if (claimed.kind !== 'skipped' && claimed.interrupted > 0) {
        this.stats.interrupted += claimed.interrupted;
        this.logger.warn(
          `delivery ${deliveryId}: the previous attempt was never recorded; marked interrupted`,
        );
      }
      if (claimed.kind === 'gave_up') {
        this.stats.gaveUp++;
        this.logger.error(
          `delivery ${deliveryId}: failed at the attempt limit after ${claimed.attempts} ` +
            'scheduled attempts, the last without a recorded outcome',
        );
        return 'failed';
      }
      if (claimed.kind === 'skipped') return 'skipped';
      return await this.attempt(claimed.claim);
    } finally {
      await this.limiter.release(endpointId, slot).catch(() => undefined);
    }
  }

  /**
   * A manual attempt was promised (`queued: true`) but the delivery is being sent now: the job
   * waits for the lease to be free (the attempt in flight recorded, or its lease expired) and
   * tries again. Bounded: a lease always frees within `leaseMs`; after twice that the job is
   * given up and logged.
   */
  private async deferManual(
    job: Job<DeliveryJob>,
  ): Promise<'deferred' | 'skipped'> {
    const busySince = job.data.busySince ?? Date.now();
    if (Date.now() - busySince > 2 * this.leaseMs) {
      this.logger.error(
        `delivery ${job.data.deliveryId}: manual attempt given up, the delivery stayed ` +
          `leased for ${Date.now() - busySince} ms`,
      );
      return 'skipped';
    }
    await this.queue.add(
      job.name,
      { ...job.data, busySince },
      {
        ...DELIVERY_JOB_OPTIONS,
        delay: DELIVERY_BUSY_DELAY_MS,
        jobId: `${String(job.id).split('~')[0]}~${Date.now()}`,
      },
    );
    return 'deferred';
  }

  /** Builds, sends and records one claimed attempt. */
  private async attempt(
    claim: ClaimedDelivery,
  ): Promise<AttemptOutcome | 'unrecorded'> {
    let result: SendResult;
    try {
      const target = await this.target(claim);
      if (target.disabled) return await this.outcomes.recordDisabled(claim);
      result = await this.observability.sendAttempt(
        { deliveryId: claim.id, attemptNumber: claim.attemptNumber },
        target.request,
        (request) => this.sender.send(request),
      );
      if (result.kind === 'error' && result.detail) {
        this.logger.warn(
          `delivery ${claim.id}: refused to connect: ${result.detail} (${SSRF_HINT})`,
        );
      }
    } catch (error) {
      this.stats.prepareFailures++;
      this.logger.error(
        `delivery ${claim.id}: could not prepare attempt ${claim.attemptNumber}: ${String(error)}`,
      );
      result = {
        kind: 'error',
        errorClass: 'internal',
        message: 'the service could not prepare the request; nothing was sent',
        durationMs: 0,
      };
    }
    return this.recordSafely(claim, result);
  }

  /**
   * Records the outcome. When Postgres refuses it, the outcome is recorded again without
   * anything the receiver sent; when that fails too, the attempt stays `in_progress`, its
   * lease expires and the next claim marks it interrupted (bounded by the attempt limit).
   */
  private async recordSafely(
    claim: ClaimedDelivery,
    result: SendResult,
  ): Promise<AttemptOutcome | 'unrecorded'> {
    try {
      return await this.outcomes.record(claim, result);
    } catch (error) {
      this.stats.recordFailures++;
      this.logger.error(
        `delivery ${claim.id}: could not record attempt ${claim.attemptNumber} ` +
          `as received: ${String(error)}; recording it without the response`,
      );
      const note =
        'the response could not be stored and was dropped (the service logged why)';
      try {
        return await this.outcomes.record(claim, result, {
          note,
          keepResponse: false,
        });
      } catch (again) {
        this.stats.unrecorded++;
        this.logger.error(
          `delivery ${claim.id}: could not record attempt ${claim.attemptNumber} at all: ` +
            `${String(again)}; it is sent again when its lease expires, up to the attempt limit`,
        );
        return 'unrecorded';
      }
    }
  }

  /** The delivery's endpoint, unless a scheduled job finds the delivery already final. */
  private async endpointOf(
    deliveryId: string,
    trigger: string,
  ): Promise<string | undefined> {
    const rows = await this.tx.manager.query(
      `SELECT endpoint_id FROM deliveries
       WHERE id = $1 AND ($2 = 'manual' OR status IN ('pending', 'sending'))`,
      [deliveryId, trigger],
    );
    return rows[0]?.endpoint_id;
  }

  private async target(claim: ClaimedDelivery) {
    const m = this.tx.manager;
    const [event, endpoint] = await Promise.all([
      m
        .query(
          `SELECT id, type, payload::text AS payload_text, created_at FROM events WHERE id = $1`,
          [claim.eventId],
        )
        .then(([row]) => {
          if (!row) throw new Error(`event ${claim.eventId} not found`);
          return toStoredEvent(row);
        }),
      m.findOneOrFail(Endpoint, {
        where: { id: claim.endpointId },
        select: { id: true, url: true, disabled: true, secrets: true },
      }),
    ]);
    const body = webhookBody(event);
    const secrets = activeSecrets(
      openSecrets(this.box, endpoint.id, endpoint.secrets),
    ).map((s) => s.secret);
    // NOTE: webhook-id is the event id (stable across attempts); the timestamp is fresh.
    const headers = buildHeaders(secrets, event.id, unixSeconds(), body);
    return {
      disabled: endpoint.disabled,
      request: { url: endpoint.url, headers, body },
    };
  }
}
