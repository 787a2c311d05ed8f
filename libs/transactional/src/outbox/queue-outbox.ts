import type { DispatchMarker } from './dispatch-marker';
import type { OutboxStore } from './outbox-store';

/** The outbox of one connection, as durable queues use it. Internal. */
export interface QueueOutbox {
  /** Writes rows in the caller's transaction. */
  readonly store: OutboxStore;
  /** Marks rows dispatched after the fast path enqueued them. */
  readonly marker: DispatchMarker;
}
