import { performance } from 'perf_hooks';

/** A pending deadline of a `DeadlineQueue`. */
export interface Deadline {
  /** Stops the deadline: its callback will not be called. Calling it again does nothing. */
  cancel(): void;
}

class Entry implements Deadline {
  prev?: Entry;
  next?: Entry;

  constructor(
    private readonly queue: DeadlineQueue,
    readonly at: number,
    public onExpire: (() => void) | undefined,
  ) {}

  cancel(): void {
    if (this.onExpire === undefined) return;
    this.onExpire = undefined;
    this.queue.unlink(this);
  }
}

/**
 * Deadlines that all have the same length, served by one timer. Since every deadline lasts as
 * long, they expire in the order they were started, so the queue keeps them in a list and the
 * timer only ever waits for the first one. Starting and cancelling one costs a list entry, not
 * a Node timer, a promise race and their clean-up: the library bounds every transaction's
 * connection wait and after-commit work this way. The timer keeps the process alive only while
 * a deadline is pending. Internal.
 */
export class DeadlineQueue {
  private head?: Entry;
  private tail?: Entry;
  private timer?: NodeJS.Timeout;
  /** Whether the timer currently keeps the process alive. */
  private timerRefed = false;

  constructor(
    /** Length of every deadline, in milliseconds. */
    readonly ms: number,
  ) {}

  /** Starts a deadline: `onExpire` runs once `ms` have passed, unless it is cancelled first. */
  start(onExpire: () => void): Deadline {
    const entry = new Entry(this, performance.now() + this.ms, onExpire);
    if (this.tail) {
      this.tail.next = entry;
      entry.prev = this.tail;
      this.tail = entry;
    } else {
      this.head = this.tail = entry;
    }
    // NOTE: an armed timer waits for an earlier deadline (or a cancelled one); it re-arms for this one.
    if (!this.timer) this.arm(this.ms);
    else if (!this.timerRefed) {
      this.timer.ref();
      this.timerRefed = true;
    }
    return entry;
  }

  /** Takes `entry` out of the list. Internal to `Entry.cancel`. */
  unlink(entry: Entry): void {
    if (entry.prev) entry.prev.next = entry.next;
    else this.head = entry.next;
    if (entry.next) entry.next.prev = entry.prev;
    else this.tail = entry.prev;
    entry.prev = entry.next = undefined;
    if (!this.head && this.timer && this.timerRefed) {
      this.timer.unref();
      this.timerRefed = false;
    }
  }

  private arm(ms: number): void {
    this.timer = setTimeout(this.fire, ms);
    this.timerRefed = true;
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.timerRefed = false;
    // NOTE: Node's timers count whole milliseconds; a deadline within one of now is due.
    const now = performance.now() + 1;
    try {
      while (this.head && this.head.at <= now) {
        const entry = this.head;
        const onExpire = entry.onExpire;
        entry.onExpire = undefined;
        this.unlink(entry);
        onExpire?.();
      }
    } finally {
      if (this.head)
        this.arm(Math.max(1, Math.ceil(this.head.at - performance.now())));
    }
  };
}
