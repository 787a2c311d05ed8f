const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/** Standard Webhooks schedule: delay before attempt n+1 is `schedule[n]` (ms). */
export const STANDARD_WEBHOOKS_SCHEDULE_MS: readonly number[] = [
  0,
  5 * SECOND,
  5 * MINUTE,
  30 * MINUTE,
  2 * HOUR,
  5 * HOUR,
  10 * HOUR,
  14 * HOUR,
  20 * HOUR,
  24 * HOUR,
];

/** Settings for {@link RetrySchedule}. */
export interface RetryScheduleOptions {
  /** Delays in ms; entry 0 is before the first attempt. Default: Standard Webhooks. */
  scheduleMs?: readonly number[];
  /** Relative jitter applied to each step, 0.2 = ±20%. */
  jitter?: number;
  /** Source of randomness in [0, 1); injectable for tests. */
  random?: () => number;
}

/** What the last attempt said about when to retry. */
export interface NextDelayOptions {
  /** Parsed Retry-After (see {@link parseRetryAfter}). */
  retryAfterMs?: number | null;
  /**
   * Set for 429 and timeouts: the receiver is overloaded, so wait at least the next
   * step even if Retry-After asks for less.
   */
  minimumNextStep?: boolean;
}

/** Delays between delivery attempts: a fixed schedule with jitter and Retry-After. */
export class RetrySchedule {
  private readonly scheduleMs: readonly number[];
  private readonly jitter: number;
  private readonly random: () => number;

  constructor(options: RetryScheduleOptions = {}) {
    this.scheduleMs = options.scheduleMs ?? STANDARD_WEBHOOKS_SCHEDULE_MS;
    this.jitter = options.jitter ?? 0.2;
    this.random = options.random ?? Math.random;
    if (
      this.scheduleMs.length === 0 ||
      this.scheduleMs.some((ms) => !(ms >= 0))
    ) {
      throw new Error(
        'Retry schedule must be a non-empty list of delays >= 0 ms',
      );
    }
    if (!(this.jitter >= 0 && this.jitter < 1)) {
      throw new Error('Retry jitter must be in [0, 1)');
    }
  }

  /** Total number of attempts, the first one included. */
  get maxAttempts(): number {
    return this.scheduleMs.length;
  }

  /** Delay before the first attempt (jittered entry 0). */
  initialDelay(): number {
    return this.jittered(this.scheduleMs[0]);
  }

  /**
   * Delay in ms before the attempt after `attemptNumber` (1 = the first attempt just
   * failed), or null when the schedule is exhausted. A Retry-After longer than the step
   * wins; a shorter one is honoured unless `minimumNextStep` is set.
   */
  nextDelay(
    attemptNumber: number,
    options: NextDelayOptions = {},
  ): number | null {
    if (!Number.isInteger(attemptNumber) || attemptNumber < 1) {
      throw new RangeError(
        `attemptNumber must be an integer >= 1, got ${attemptNumber}`,
      );
    }
    if (attemptNumber >= this.scheduleMs.length) return null;
    const step = this.jittered(this.scheduleMs[attemptNumber]);
    const retryAfter = options.retryAfterMs;
    if (retryAfter === undefined || retryAfter === null) return step;
    const wanted = Math.max(0, Math.round(retryAfter));
    return options.minimumNextStep ? Math.max(step, wanted) : wanted;
  }

  private jittered(ms: number): number {
    const factor = 1 + this.jitter * (2 * this.random() - 1);
    return Math.round(ms * factor);
  }
}

/** Bounds applied to a parsed Retry-After. */
export interface RetryAfterBounds {
  minMs?: number;
  maxMs?: number;
}

const DAY = '(Mon|Tue|Wed|Thu|Fri|Sat|Sun)';
const MONTH = '(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)';
const TIME = '\\d{2}:\\d{2}:\\d{2}';
const IMF_FIXDATE = new RegExp(`^${DAY}, \\d{2} ${MONTH} \\d{4} ${TIME} GMT$`);
const RFC850 = new RegExp(
  `^${DAY}[a-z]{0,6}, \\d{2}-${MONTH}-\\d{2} ${TIME} GMT$`,
);
const ASCTIME = new RegExp(`^${DAY} ${MONTH} ( \\d|\\d{2}) ${TIME} \\d{4}$`);

/**
 * Parses a Retry-After header (delta-seconds or HTTP-date) into a delay in ms from
 * `now`, clamped to [1 s, 24 h] by default. Returns null when absent or malformed.
 */
export function parseRetryAfter(
  value: string | string[] | null | undefined,
  now: Date | number = Date.now(),
  bounds: RetryAfterBounds = {},
): number | null {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!text) return null;
  let ms: number;
  if (/^\d+$/.test(text)) {
    ms = Number(text) * SECOND;
  } else if (
    IMF_FIXDATE.test(text) ||
    RFC850.test(text) ||
    ASCTIME.test(text)
  ) {
    const at = Date.parse(ASCTIME.test(text) ? `${text} GMT` : text);
    if (Number.isNaN(at)) return null;
    ms = at - (typeof now === 'number' ? now : now.getTime());
  } else {
    return null;
  }
  const { minMs = SECOND, maxMs = 24 * HOUR } = bounds;
  return Math.min(maxMs, Math.max(minMs, ms));
}
