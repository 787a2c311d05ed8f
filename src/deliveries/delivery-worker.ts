import { HotStatements } from '../database/hot-statements';
import { preparedStatement } from '../database/prepared-query';
import { InjectQueue } from '@nestjs/bull';
import {
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
} from '@nestjs/common';
import type { Job, Queue } from 'bull';
import { TransactionHost, withTimeout } from 'nestjs-transactional-jobs';
import { APP_CONFIG, AppConfig } from '../config/app-config';
import { activeSecrets, openSecrets } from '../endpoints/endpoint-secrets';
import type { EndpointSecret } from '../endpoints/endpoint.entity';
import { SecretBox } from '../secrets/secret-box';
import { StoredEvent, toStoredEvent } from '../events/stored-event';
import { RawJson } from '../http/raw-json';
import {
  buildHeaders,
  unixSeconds,
} from '../webhooks-http/standard-webhooks-signer';
import type { SendResult } from '../webhooks-http/send-result';
import { SSRF_HINT } from '../webhooks-http/ssrf-guard';
import { WebhookSender } from '../webhooks-http/webhook-sender';
import { Batcher } from './batcher';
import {
  BatchClaimRequest,
  BatchClaimResult,
  ENDPOINT_TARGET_SQL,
  EndpointTarget,
  PreparedClaim,
} from './delivery-batch-claims';
import { claimScheduledBatch } from './delivery-due-claims';
import { Success, isSuccess, recordSuccesses } from './delivery-batch-outcomes';
import { ClaimedDelivery, ClaimResult, claimDelivery } from './delivery-claims';
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
import { EndpointSlots, ParkedJob, TakenJob } from './endpoint-slots';
import { DeliveryObservability } from '../observability/delivery-observability';

/** What became of one job (of the first delivery its slot served). */
export type HandleResult =
  | AttemptOutcome
  | 'skipped'
  | 'deferred'
  | 'parked'
  | 'unrecorded'
  | 'recording';

/**
 * Parked jobs a slot holder serves in a row before it yields the slot: the next one goes back
 * to the queue, behind other endpoints' jobs (worker slots take turns among endpoints).
 */
const TURN_JOBS = 16;

/**
 * How long a slot holder serves its endpoint's parked jobs before it yields its worker to the
 * jobs of other endpoints waiting in the queue, however few it served: slow endpoints (several
 * of one tenant can hold every worker) must not keep every worker for TURN_JOBS slow answers in a
 * row while other endpoints' jobs wait. Jobs of its own endpoint in the queue never end a turn
 * (they would only wait for its slots again). Past it, each job served costs one Redis script.
 */
const TURN_MS = 1_000;

/** The next jobs of the queue that the end-of-turn check reads (see `EndpointSlots.othersQueued`). */
const TURN_LOOKAHEAD = 50;

/**
 * Longest the end-of-turn check may take: it runs between renewing the slot's lease and a send,
 * so a Redis that stalls must not eat the lease (the turn goes on, as when the check fails).
 */
const TURN_CHECK_TIMEOUT_MS = 100;

/** A job's claim: an attempt to send, or what became of the job without one. */
type Claimed =
  | {
      claim: ClaimedDelivery | PreparedClaim;
      /**
       * Whether the endpoint the claim read must be read again before the request is built:
       * a claim taken ahead waits for the send in progress (up to a whole timeout), and a
       * change the API answers meanwhile (PATCH, DELETE, rotate-secret, a 410) must hold for
       * the request.
       */
      readAgain?: boolean;
    }
  | { done: HandleResult };

/** The next parked job of a slot, taken (and being claimed) while the slot sends. */
interface Ahead extends TakenJob {
  claimed: Promise<Claimed>;
}

/** How long a manual job waits before trying again when the delivery is being sent. */
const DELIVERY_BUSY_DELAY_MS = 250;

const ENDPOINT_TARGET = preparedStatement(
  'endpoint_target',
  ENDPOINT_TARGET_SQL,
);

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
  private readonly leaseMs: number;
  /**
   * The lease of a claim made while the slot still sends another delivery: it may wait for
   * that send (at most the timeout) before its own starts.
   */
  private readonly aheadLeaseMs: number;
  private processing = false;
  /** The jobs this process is handling now, and the outcomes it is recording. */
  private readonly inFlight = new Set<Promise<unknown>>();
  private recording = 0;
  private readonly claims: Batcher<BatchClaimRequest, BatchClaimResult>;
  private readonly aheadClaims: Batcher<BatchClaimRequest, BatchClaimResult>;
  private readonly successes: Batcher<Success, boolean>;
  /** Opened signing secrets per endpoint, keyed by the sealed values they came from. */
  private readonly secretsCache = new Map<
    string,
    { sealed: string; secrets: EndpointSecret[] }
  >();

  constructor(
    @InjectQueue(DELIVERY_QUEUE) private readonly queue: Queue<DeliveryJob>,
    private readonly tx: TransactionHost,
    private readonly sender: WebhookSender,
    private readonly outcomes: DeliveryOutcomeService,
    private readonly stats: DeliveryStats,
    private readonly box: SecretBox,
    private readonly slots: EndpointSlots,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly observability: DeliveryObservability,
    private readonly statements: HotStatements,
  ) {
    this.leaseMs = config.deliveryTimeoutMs + config.deliveryLeaseMarginMs;
    this.aheadLeaseMs = this.leaseMs + config.deliveryTimeoutMs;
    const claimer = (leaseMs: number) =>
      new Batcher((requests: BatchClaimRequest[]) =>
        claimScheduledBatch(
          this.tx,
          this.statements,
          requests,
          leaseMs,
          this.outcomes.maxAttempts,
        ),
      );
    this.claims = claimer(this.leaseMs);
    this.aheadClaims = claimer(this.aheadLeaseMs);
    this.successes = new Batcher((items) =>
      recordSuccesses(this.statements, items),
    );
  }

  onApplicationBootstrap() {
    if (this.config.role === 'api') return;
    this.processing = true;
    // NOTE: Bull's process() names the worker's blocking connection without waiting for the
    // reply (bull 4.16, lib/worker.js): a stop that cuts that connection first rejected it
    // unhandled ("Connection is closed.", seen in CI). Caught here, for this queue only.
    const queue = this.queue as Queue & { setWorkerName(): Promise<void> };
    const setWorkerName = queue.setWorkerName.bind(queue);
    queue.setWorkerName = () =>
      setWorkerName().catch((error: unknown) => {
        if (this.processing)
          this.logger.warn(
            `naming the worker's connection failed: ${String(error)}`,
          );
      });
    // NOTE: Bull's process() settles when its loops end, and rejects when a Redis command of
    // its start-up fails, e.g. cut off by a close that came first ("Connection is closed.").
    this.queue
      .process(this.config.workerConcurrency, (job) =>
        this.track(this.observability.runJob(job, () => this.handle(job))),
      )
      .catch((error: unknown) => {
        if (this.processing) {
          this.logger.error(`the worker stopped taking jobs: ${String(error)}`);
        }
      });
  }

  /** Keeps `work` in `inFlight` until it settles (for `stop()`). */
  private track<T>(work: Promise<T>): Promise<T> {
    const settled = work.catch(() => undefined);
    this.inFlight.add(settled);
    void settled.then(() => this.inFlight.delete(settled));
    return work;
  }

  /**
   * Takes no new job in this process (other workers go on); resolves once the jobs in progress
   * have finished: their attempt sent, its outcome recorded and the job completed in Bull. A
   * slot this process frees while jobs of its endpoint are parked and nobody else holds one
   * hands a parked job back to the queue, for another worker.
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
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /**
   * Processes one job; never throws for delivery failures (they are recorded instead). A job
   * whose endpoint has no free slot is parked in Redis (no Postgres write, no re-add); a job
   * that holds a slot goes on with its endpoint's parked jobs, one after the other, until none
   * is left (or the process stops). While it sends one, it takes and claims the next (a claim
   * is not a send: the endpoint still gets at most its limit of requests at once), so that a
   * slot's cycle costs the longest of its steps, not their sum.
   */
  async handle(job: Job<DeliveryJob>): Promise<HandleResult> {
    const trigger = job.data.trigger ?? 'scheduled';
    const endpointId =
      job.data.endpointId ??
      (await this.endpointOf(job.data.deliveryId, trigger));
    if (!endpointId) return 'skipped';
    let current: ParkedJob = {
      jobId: String(job.id),
      data: { ...job.data, endpointId },
    };
    const member = `${job.id}:${process.pid}`;
    const acquired = await this.slots.acquireOrPark(
      endpointId,
      member,
      current,
    );
    if (!acquired) return 'parked';
    /** The endpoint's parked jobs when this slot last looked: none, no job is taken ahead. */
    let parked = acquired.parked;
    let first: { outcome: HandleResult } | { error: unknown } | undefined;
    let claimed = this.claimJob(current, endpointId, this.claims, this.leaseMs);
    const turnStarted = Date.now();
    for (let served = 1; ; served++) {
      let ahead: Promise<Ahead | undefined> | undefined;
      let outcome: HandleResult | undefined;
      let turnOver = served % TURN_JOBS === 0;
      try {
        const c = await claimed;
        if ('done' in c) outcome = c.done;
        else {
          if (this.processing && parked > 0 && !turnOver)
            turnOver = await this.othersWait(endpointId, turnStarted);
          if (this.processing && parked > 0 && !turnOver)
            ahead = this.takeAhead(endpointId, member);
          outcome = await this.attempt(c.claim, c.readAgain);
        }
        first ??= { outcome };
      } catch (error) {
        if (first) {
          // A parked job's failure is not this job's: the reconciler finds its delivery due.
          this.logger.error(
            `delivery ${current.data.deliveryId}: ${String(error)}; left to the reconciler`,
          );
        } else first = { error };
      }
      // NOTE: a job taken ahead is claimed (or being claimed): it is served whatever came of
      // this one, and never handed back.
      const next = await ahead;
      if (next) {
        ({ job: current, parked } = next);
        claimed = next.claimed;
        continue;
      }
      const mode =
        outcome === undefined || !this.processing
          ? 'free'
          : turnOver || (await this.othersWait(endpointId, turnStarted))
            ? 'yield'
            : 'take';
      const taken = await this.release(endpointId, member, mode);
      if (!taken) break;
      ({ job: current, parked } = taken);
      claimed = this.claimJob(current, endpointId, this.claims, this.leaseMs);
    }
    if (!first || 'error' in first) throw first?.error;
    return first.outcome;
  }

  /**
   * Whether a turn of `endpointId`'s slot that began at `turnStarted` is over because it has
   * lasted TURN_MS and other endpoints' jobs wait in the queue. A failed or slow check
   * (TURN_CHECK_TIMEOUT_MS) is a no: the turn ends after TURN_JOBS anyway.
   */
  private async othersWait(
    endpointId: string,
    turnStarted: number,
  ): Promise<boolean> {
    if (Date.now() - turnStarted < TURN_MS) return false;
    try {
      return await withTimeout(
        this.slots.othersQueued(endpointId, TURN_LOOKAHEAD),
        TURN_CHECK_TIMEOUT_MS,
      );
    } catch (error) {
      // NOTE: debug: while Redis stalls this would come once per job served.
      this.logger.debug(
        `endpoint ${endpointId}: reading the queue for other endpoints' jobs failed: ${String(error)}`,
      );
      return false;
    }
  }

  /**
   * Takes the endpoint's next parked job for the slot `member` holds (none: the slot stays as
   * it is), and starts claiming it with the longer lease of a claim that waits for a send.
   */
  private async takeAhead(
    endpointId: string,
    member: string,
  ): Promise<Ahead | undefined> {
    let taken: TakenJob | undefined;
    try {
      taken = await this.slots.takeNext(endpointId, member, this.aheadLeaseMs);
    } catch (error) {
      // NOTE: the slot's release, after the send, takes the next parked job instead.
      this.logger.warn(
        `endpoint ${endpointId}: taking the next parked job failed: ${String(error)}`,
      );
    }
    if (!taken) return undefined;
    const claimed = this.claimJob(
      taken.job,
      endpointId,
      this.aheadClaims,
      this.aheadLeaseMs,
    ).then((c): Claimed => ('claim' in c ? { ...c, readAgain: true } : c));
    // NOTE: awaited once the send in progress is over; a rejection is handled there.
    claimed.catch(() => undefined);
    return { ...taken, claimed };
  }

  /**
   * Frees the slot, or keeps it for the endpoint's next parked job (returned). A parked job
   * handed back (no other holder is left, or this one yields its turn) is added to the queue
   * again.
   */
  private async release(
    endpointId: string,
    member: string,
    mode: 'take' | 'free' | 'yield',
  ): Promise<TakenJob | undefined> {
    try {
      const released = await this.slots.releaseOrNext(endpointId, member, mode);
      if (released.kind === 'next') return released;
      if (released.kind === 'handoff') {
        // NOTE: under its own id, which the reconciler checks for (had the job that parked
        // it not been removed yet, Bull would ignore the add; the reconciler then adds it).
        await this.queue.add(released.job.data, {
          ...DELIVERY_JOB_OPTIONS,
          jobId: released.job.jobId,
        });
      }
    } catch (error) {
      // NOTE: the slot's lease ends by itself; parked jobs are found by the reconciler.
      this.logger.warn(
        `endpoint ${endpointId}: releasing a slot failed: ${String(error)}`,
      );
    }
    return undefined;
  }

  /**
   * Claims one delivery with a lease of `leaseMs`; scheduled claims are batched (`batch`)
   * with other slots' claims. Resolves with the claim to send, or what became of the job.
   */
  private async claimJob(
    job: ParkedJob,
    endpointId: string,
    batch: Batcher<BatchClaimRequest, BatchClaimResult>,
    leaseMs: number,
  ): Promise<Claimed> {
    const { deliveryId } = job.data;
    const trigger = job.data.trigger ?? 'scheduled';
    let claimed: ClaimResult | BatchClaimResult | undefined;
    if (trigger === 'scheduled' && job.data.onlyIfFailedAt === undefined) {
      claimed = await batch.submit({ deliveryId, endpointId });
    }
    if (!claimed || claimed.kind === 'fallback') {
      claimed = await this.tx.withTransaction(() =>
        claimDelivery(
          this.tx.manager,
          deliveryId,
          trigger,
          leaseMs,
          this.outcomes.maxAttempts,
          job.data.onlyIfFailedAt,
        ),
      );
    }
    if (claimed.kind === 'busy') {
      return {
        done: trigger === 'manual' ? await this.deferManual(job) : 'skipped',
      };
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
      return { done: 'failed' };
    }
    if (claimed.kind === 'skipped') return { done: 'skipped' };
    return { claim: claimed.claim };
  }

  /**
   * A manual attempt was promised (`queued: true`) but the delivery is being sent now: the job
   * waits for the lease to be free (the attempt in flight recorded, or its lease expired) and
   * tries again. Bounded: a lease always frees within `leaseMs`; after twice that the job is
   * given up and logged.
   */
  private async deferManual(job: ParkedJob): Promise<'deferred' | 'skipped'> {
    const busySince = job.data.busySince ?? Date.now();
    if (Date.now() - busySince > 2 * this.leaseMs) {
      this.logger.error(
        `delivery ${job.data.deliveryId}: manual attempt given up, the delivery stayed ` +
          `leased for ${Date.now() - busySince} ms`,
      );
      return 'skipped';
    }
    // NOTE: a new job that waits out the lease first: it takes no place in the endpoint's
    // line from the job it replaces (parked at that place, it would come back at the head of
    // the line each time it found the delivery still busy).
    const data: DeliveryJob = { ...job.data, busySince };
    delete data.parkPlace;
    await this.queue.add(data, {
      ...DELIVERY_JOB_OPTIONS,
      delay: DELIVERY_BUSY_DELAY_MS,
      jobId: `${job.jobId.split('~')[0]}~${Date.now()}`,
    });
    return 'deferred';
  }

  /**
   * Builds, sends and records one claimed attempt. A 2xx outcome is recorded with others in
   * one transaction, and the slot is not held for it (the request is over): it resolves
   * `recording` unless too many outcomes are being recorded already.
   */
  private async attempt(
    claim: ClaimedDelivery | PreparedClaim,
    readAgain = false,
  ): Promise<HandleResult> {
    let result: SendResult;
    let sentUrl: string | undefined;
    try {
      const target = await this.target(claim, readAgain);
      // NOTE: the endpoint was deleted since the claim; so was the delivery (by cascade).
      if (!target) return 'skipped';
      if (target.disabled) return await this.outcomes.recordDisabled(claim);
      sentUrl = target.request.url;
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
    if (!isSuccess(result)) return this.recordSafely(claim, result, sentUrl);
    const sent = result;
    const recorded = this.track(
      this.successes.submit({ claim, result: sent }).then(
        (kept): HandleResult => (kept ? 'succeeded' : 'unchanged'),
        // NOTE: the batch failed as a whole: each outcome is recorded on its own.
        () => this.recordSafely(claim, sent),
      ),
    );
    this.recording++;
    void recorded.finally(() => this.recording--);
    void recorded.then(
      (outcome) => this.observability.outcomeRecorded(outcome),
      () => undefined,
    );
    if (this.recording > 2 * this.config.workerConcurrency) return recorded;
    return 'recording';
  }

  /**
   * Records the outcome. When Postgres refuses it, the outcome is recorded again without
   * anything the receiver sent; when that fails too, the attempt stays `in_progress`, its
   * lease expires and the next claim marks it interrupted (bounded by the attempt limit).
   */
  private async recordSafely(
    claim: ClaimedDelivery,
    result: SendResult,
    sentUrl?: string,
  ): Promise<AttemptOutcome | 'unrecorded'> {
    try {
      return await this.outcomes.record(claim, result, { sentUrl });
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
          sentUrl,
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

  /**
   * The delivery's endpoint (jobs enqueued by earlier versions do not carry it), unless a
   * scheduled job finds the delivery already final. NOTE: looked up by primary key alone, the
   * status checked here: a status predicate lets the planner pick a partial index instead.
   */
  private async endpointOf(
    deliveryId: string,
    trigger: string,
  ): Promise<string | undefined> {
    const rows: { endpoint_id: string; status: string }[] =
      await this.tx.manager.query(
        'SELECT endpoint_id, status FROM deliveries WHERE id = $1',
        [deliveryId],
      );
    const row = rows[0];
    if (!row) return undefined;
    if (
      trigger !== 'manual' &&
      row.status !== 'pending' &&
      row.status !== 'sending'
    )
      return undefined;
    return row.endpoint_id;
  }

  /** Signing secrets of an endpoint, opened once per sealed value. */
  private secretsOf(endpoint: EndpointTarget): string[] {
    const sealed = endpoint.secrets
      .map((s) => `${s.sealed}/${String(s.expiresAt)}`)
      .join('|');
    let cached = this.secretsCache.get(endpoint.id);
    if (cached?.sealed !== sealed) {
      cached = {
        sealed,
        secrets: openSecrets(this.box, endpoint.id, endpoint.secrets),
      };
      if (this.secretsCache.size > 10_000) this.secretsCache.clear();
      this.secretsCache.set(endpoint.id, cached);
    }
    return activeSecrets(cached.secrets).map((s) => s.secret);
  }

  /**
   * The request of an attempt, or `undefined` when its endpoint no longer exists. A batch claim
   * read the event and endpoint already; `readAgain`: read the endpoint once more.
   */
  private async target(
    claim: ClaimedDelivery | PreparedClaim,
    readAgain: boolean,
  ) {
    const [event, endpoint] =
      'event' in claim
        ? [
            claim.event,
            readAgain ? await this.readEndpoint(claim) : claim.endpoint,
          ]
        : await this.readTarget(claim);
    if (!endpoint) return undefined;
    const body = webhookBody(event);
    // NOTE: webhook-id is the event id (stable across attempts); the timestamp is fresh.
    const headers = buildHeaders(
      this.secretsOf(endpoint),
      event.id,
      unixSeconds(),
      body,
    );
    return {
      disabled: endpoint.disabled,
      request: { url: endpoint.url, headers, body },
    };
  }

  /**
   * The claim's endpoint as it is now; `null` when it has been deleted. A prepared statement on
   * the hot statements' connections: it runs once per delivery an endpoint's slot serves.
   */
  private async readEndpoint(
    claim: ClaimedDelivery,
  ): Promise<EndpointTarget | null> {
    const [row] = await this.statements.run<EndpointTarget>(ENDPOINT_TARGET, [
      claim.endpointId,
    ]);
    return row ?? null;
  }

  /** The event and endpoint of a claim made alone (manual, recover). */
  private async readTarget(
    claim: ClaimedDelivery,
  ): Promise<[StoredEvent, EndpointTarget | null]> {
    const m = this.tx.manager;
    return Promise.all([
      m
        .query(
          `SELECT id, type, payload::text AS payload_text, created_at FROM events WHERE id = $1`,
          [claim.eventId],
        )
        .then(([row]) => {
          if (!row) throw new Error(`event ${claim.eventId} not found`);
          return toStoredEvent(row);
        }),
      this.readEndpoint(claim),
    ]);
  }
}
