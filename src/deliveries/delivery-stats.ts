import { Injectable } from '@nestjs/common';

/**
 * Counters of what went wrong around delivery attempts in this process, shown by `GET /health`.
 * Each one is also logged where it is counted.
 */
@Injectable()
export class DeliveryStats {
  /** Outcomes Postgres refused to store as they were (then stored without the response). */
  recordFailures = 0;
  /** Outcomes that could not be stored at all: the attempt stays `in_progress` until reclaimed. */
  unrecorded = 0;
  /** Attempts found still `in_progress` after their lease: marked `interrupted`. */
  interrupted = 0;
  /** Deliveries failed at claim time because they reached the attempt limit. */
  gaveUp = 0;
  /** Attempts that failed before a request could be built (event or endpoint unreadable). */
  prepareFailures = 0;

  /** A plain copy, for JSON. */
  snapshot() {
    return {
      recordFailures: this.recordFailures,
      unrecorded: this.unrecorded,
      interrupted: this.interrupted,
      gaveUp: this.gaveUp,
      prepareFailures: this.prepareFailures,
    };
  }
}
