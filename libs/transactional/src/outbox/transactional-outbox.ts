import type { EntityManager } from 'typeorm';
import { DEFAULT_CONNECTION_NAME } from '../transactional.constants';
import type { QueueRegistry } from '../queue-registry';
import { DispatchMarker } from './dispatch-marker';
import { OutboxRelay, OutboxRelayStats } from './outbox-relay.service';
import { dialectOf } from '../dialect/sql-dialect';
import { MysqlOutboxStore } from './mysql-outbox-store';
import type { OutboxStats, OutboxStore } from './outbox-store';
import { PostgresOutboxStore } from './postgres-outbox-store';
import { OutboxWriter } from './outbox-writer';
import { ResolvedOutboxOptions } from './outbox.options';
import type { QueueOutbox } from './queue-outbox';

/**
 * The transactional outbox of every connection: what durable queues write to, the relays that
 * dispatch what the fast path lost, and their observable state. Inject it for health checks
 * and metrics (`stats()`), or to run a relay poll by hand (`relayOnce()`).
 */
export class TransactionalOutbox {
  private readonly stores = new Map<string, OutboxStore>();
  private readonly outboxes = new Map<string, QueueOutbox>();
  private readonly relays = new Map<string, OutboxRelay>();

  constructor(
    /** The resolved options (defaults applied). */
    readonly options: ResolvedOutboxOptions,
    private readonly managerOf: (connectionName: string) => EntityManager,
    private readonly registry: QueueRegistry,
  ) {}

  /** The store of `connectionName`'s dialect (Postgres, or MySQL/MariaDB). */
  private storeOf(connectionName: string): OutboxStore {
    let store = this.stores.get(connectionName);
    if (!store) {
      const dialect = dialectOf(this.managerOf(connectionName).connection);
      store =
        dialect === 'mysql'
          ? new MysqlOutboxStore(this.options)
          : new PostgresOutboxStore(this.options);
      this.stores.set(connectionName, store);
    }
    return store;
  }

  /** The store and marker durable queues of `connectionName` use. Internal. */
  forConnection(connectionName: string): QueueOutbox {
    let outbox = this.outboxes.get(connectionName);
    if (!outbox) {
      const manager = () => this.managerOf(connectionName);
      const store = this.storeOf(connectionName);
      outbox = {
        writer: new OutboxWriter(store, this.options),
        marker: new DispatchMarker(
          store,
          manager,
          this.options.markBatchDelayMs,
        ),
      };
      this.outboxes.set(connectionName, outbox);
    }
    return outbox;
  }

  /**
   * What the outbox of `connectionName` holds: pending and dispatched rows, the oldest pending
   * row's age, and the rows whose relay attempts failed (how many, the most attempts, a sample
   * error).
   */
  stats(connectionName = DEFAULT_CONNECTION_NAME): Promise<OutboxStats> {
    return this.storeOf(connectionName).stats(this.managerOf(connectionName));
  }

  /**
   * Runs one relay poll now: claims the eligible rows (`available_at` passed) for a lease,
   * dispatches them and marks them; resolves with the number of rows it dispatched. Rejects
   * when it claimed rows and could dispatch none (Redis down); the attempt is recorded on the
   * rows, which then wait out their backoff.
   */
  relayOnce(connectionName = DEFAULT_CONNECTION_NAME): Promise<number> {
    return this.relayOf(connectionName).pollOnce();
  }

  /** Rows the relays of this process have dispatched since start-up. */
  get relayed(): number {
    let total = 0;
    for (const relay of this.relays.values()) total += relay.relayed;
    return total;
  }

  /** The counters of this process's relays (every connection), summed. */
  get relayStats(): OutboxRelayStats {
    const total = { polls: 0, batches: 0, relayed: 0, failedPolls: 0 };
    for (const { stats } of this.relays.values()) {
      total.polls += stats.polls;
      total.batches += stats.batches;
      total.relayed += stats.relayed;
      total.failedPolls += stats.failedPolls;
    }
    return total;
  }

  /** Starts a relay for each connection that has queues (unless disabled). Internal. */
  start(): void {
    if (!this.options.relay.enabled) return;
    for (const connectionName of this.registry.byConnection().keys()) {
      this.relayOf(connectionName).start();
    }
  }

  /** Stops the relays and marks what the fast path has enqueued. Internal. */
  async stop(): Promise<void> {
    await Promise.all([...this.relays.values()].map((relay) => relay.stop()));
    await Promise.all(
      [...this.outboxes.values()].map((outbox) => outbox.marker.close()),
    );
  }

  private relayOf(connectionName: string): OutboxRelay {
    let relay = this.relays.get(connectionName);
    if (!relay) {
      relay = new OutboxRelay(
        connectionName,
        () => this.managerOf(connectionName),
        this.storeOf(connectionName),
        this.registry,
        this.options,
      );
      this.relays.set(connectionName, relay);
    }
    return relay;
  }
}
