import {
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
  OnModuleDestroy,
} from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { APP_CONFIG, AppConfig } from '../config/app-config';
import { DeliveryReconciler } from '../deliveries/delivery-reconciler';
import { DeliveryWorker } from '../deliveries/delivery-worker';
import { WebhookSender } from '../webhooks-http/webhook-sender';
import { HttpDrain } from './http-drain';

/** How long, once the timeout ran out, the aborted attempts get to be recorded. */
const ABORT_GRACE_MS = 2_000;

/**
 * The first stage of a stop (a signal, see `stopOnSignals`, or `app.close()`): take no new work,
 * then wait, at most `shutdownTimeoutMs`, for the work in flight. Nest goes on with the rest:
 * TransactionalModule drains the transactions left (beforeApplicationShutdown), then Bull
 * queues, Redis, TypeORM and the sender's HTTP agents close (onApplicationShutdown).
 */
@Injectable()
export class GracefulShutdown
  implements OnApplicationBootstrap, OnModuleDestroy
{
  private readonly logger = new Logger('Shutdown');
  private http?: HttpDrain;
  private stopping?: { startedAt: number; work: Promise<unknown> };
  /** Whether the stop gave up on work still in flight when the timeout ran out. */
  timedOut = false;

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly worker: DeliveryWorker,
    private readonly reconciler: DeliveryReconciler,
    private readonly sender: WebhookSender,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onApplicationBootstrap() {
    const server = this.adapterHost.httpAdapter?.getHttpServer();
    if (server) this.http = new HttpDrain(server);
  }

  /**
   * Closes the listening socket, stops this process's worker from taking jobs and the
   * reconciler from starting rounds. Returns at once; idempotent.
   */
  stopIntake(): void {
    if (this.stopping) return;
    this.logger.log(
      `taking no new work; waiting for ${this.http?.requestsInFlight ?? 0} ` +
        `request(s) in flight (at most ${this.config.shutdownTimeoutMs} ms)`,
    );
    this.stopping = {
      startedAt: Date.now(),
      work: Promise.all([
        this.http?.stopAccepting(),
        this.worker.stop(),
        this.reconciler.stop(),
      ]),
    };
  }

  // NOTE: Nest's close runs onModuleDestroy first, then beforeApplicationShutdown (where the
  // library drains), then closes the HTTP server, then onApplicationShutdown (connections).
  // Everything in flight must be over before the library drains, hence this hook.
  async onModuleDestroy() {
    this.stopIntake();
    const { startedAt, work } = this.stopping!;
    const budget = this.config.shutdownTimeoutMs - (Date.now() - startedAt);
    if (await finishes(work, budget)) {
      this.logger.log(
        `work in flight finished in ${Date.now() - startedAt} ms`,
      );
      return;
    }
    this.timedOut = true;
    this.logger.error(
      `gave up after ${Date.now() - startedAt} ms (SHUTDOWN_TIMEOUT_MS): cutting off ` +
        `${this.http?.requestsInFlight ?? 0} request(s) and aborting the webhooks in flight ` +
        `(recorded as failed attempts, to be retried)`,
    );
    this.http?.forceClose();
    this.sender.abortAll(
      `the worker stopped before the receiver answered (SHUTDOWN_TIMEOUT_MS: ${this.config.shutdownTimeoutMs} ms)`,
    );
    // NOTE: an attempt not recorded by then stays `sending` until its lease expires.
    await finishes(work, ABORT_GRACE_MS);
  }
}

/** Whether `work` settles within `ms`. */
async function finishes(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work.then(() => true),
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), Math.max(0, ms));
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
