import { InjectQueue } from '@nestjs/bull';
import {
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
} from '@nestjs/common';
import type { Job, Queue } from 'bull';
import { TransactionHost } from '@app/transactional';
import { APP_CONFIG, AppConfig } from '../config/app-config';
import { activeSecrets } from '../endpoints/endpoint-secrets';
import { Endpoint } from '../endpoints/endpoint.entity';
import { WebhookEvent } from '../events/event.entity';
import {
  buildHeaders,
  unixSeconds,
} from '../webhooks-http/standard-webhooks-signer';
import { WebhookSender } from '../webhooks-http/webhook-sender';
import { ClaimedDelivery, claimDelivery } from './delivery-claims';
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

/** How long a job waits before trying again when its endpoint is at its concurrency limit. */
const ENDPOINT_BUSY_DELAY_MS = 500;

/** The exact bytes sent (and signed) for an event: the same on every attempt. */
export function webhookBody(event: WebhookEvent): string {
  return JSON.stringify({
    type: event.type,
    timestamp: event.createdAt.toISOString(),
    data: event.payload,
  });
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
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.leaseMs = config.deliveryTimeoutMs + config.deliveryLeaseMarginMs;
    this.limiter = new EndpointLimiter(
      queue.client,
      config.perEndpointConcurrency,
      this.leaseMs,
    );
  }

  onApplicationBootstrap() {
    if (this.config.role === 'api') return;
    this.processing = true;
    void this.queue.process(this.config.workerConcurrency, (job) => {
      const handling = this.handle(job);
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
  ): Promise<AttemptOutcome | 'skipped' | 'deferred'> {
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
      const claim = await this.tx.withTransaction(() =>
        claimDelivery(this.tx.manager, deliveryId, trigger, this.leaseMs),
      );
      if (!claim) return 'skipped';
      const target = await this.target(claim);
      if (target.disabled) return await this.outcomes.recordDisabled(claim);
      const result = await this.sender.send(target.request);
      return await this.outcomes.record(claim, result);
    } finally {
      await this.limiter.release(endpointId, slot).catch(() => undefined);
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
      m.findOneByOrFail(WebhookEvent, { id: claim.eventId }),
      m.findOneOrFail(Endpoint, {
        where: { id: claim.endpointId },
        select: { id: true, url: true, disabled: true, secrets: true },
      }),
    ]);
    const body = webhookBody(event);
    const secrets = activeSecrets(endpoint.secrets).map((s) => s.secret);
    // NOTE: webhook-id is the event id (stable across attempts); the timestamp is fresh.
    const headers = buildHeaders(secrets, event.id, unixSeconds(), body);
    return {
      disabled: endpoint.disabled,
      request: { url: endpoint.url, headers, body },
    };
  }
}
