import type { DispatchMarker } from './dispatch-marker';
import type { OutboxWriter } from './outbox-writer';

/** The outbox of one connection, as durable queues use it. Internal. */
export interface QueueOutbox {
  /** Writes rows in the caller's transaction; says how long the fast path may take. */
  readonly writer: OutboxWriter;
  /** Marks rows dispatched after the fast path enqueued them. */
  readonly marker: DispatchMarker;
}
