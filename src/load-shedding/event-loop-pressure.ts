import {
  Inject,
  Injectable,
  OnApplicationBootstrap,
  OnModuleDestroy,
} from '@nestjs/common';
import { EventLoopUtilization, performance } from 'perf_hooks';
import { APP_CONFIG, AppConfig } from '../config/app-config';

/** How often the event loop's utilization is read. */
const WINDOW_MS = 250;

/** Consecutive busy windows that make the loop count as overloaded (one long task is not). */
const BUSY_WINDOWS = 2;

/**
 * How busy this process's event loop is: its utilization (`performance.eventLoopUtilization`,
 * the share of wall-clock time it spent running callbacks rather than waiting for I/O) in each
 * 250 ms window. A loop that is never idle has more work than CPU, and every callback waits in
 * line: a delivery, which goes through a dozen awaits (claim, send, record, slot), waits at each.
 * Measured from the application's bootstrap (its start-up is busy by nature); off, nothing
 * measured, when `API_SHED_LOOP_UTILIZATION` is 0.
 */
@Injectable()
export class EventLoopPressure
  implements OnApplicationBootstrap, OnModuleDestroy
{
  private timer?: NodeJS.Timeout;
  private last?: EventLoopUtilization;
  private lastAt = 0;
  /** Utilization (%) of the last windows, the latest last. */
  private readonly windows: number[] = [];

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  onApplicationBootstrap() {
    if (this.config.shedLoopUtilization === 0) return;
    this.last = performance.eventLoopUtilization();
    this.lastAt = Date.now();
    this.timer = setInterval(() => this.read(), WINDOW_MS);
    this.timer.unref();
  }

  /** The loop's utilization in the last window, in % (0 before the first one). */
  get utilization(): number {
    this.catchUp();
    return this.windows[this.windows.length - 1] ?? 0;
  }

  /**
   * Whether the loop was busier than `API_SHED_LOOP_UTILIZATION` % in each of the last two
   * windows (never when it is 0): a sustained overload, not one long task or GC pause.
   */
  get overloaded(): boolean {
    const limit = this.config.shedLoopUtilization;
    if (limit === 0) return false;
    this.catchUp();
    return (
      this.windows.length === BUSY_WINDOWS &&
      this.windows.every((percent) => percent > limit)
    );
  }

  /** A loop so busy that the timer itself runs late: the window is over, read it now. */
  private catchUp() {
    if (this.last && Date.now() - this.lastAt >= 2 * WINDOW_MS) this.read();
  }

  private read() {
    const now = performance.eventLoopUtilization();
    const window = performance.eventLoopUtilization(now, this.last);
    this.last = now;
    this.lastAt = Date.now();
    this.windows.push(Math.round(window.utilization * 100));
    if (this.windows.length > BUSY_WINDOWS) this.windows.shift();
  }

  onModuleDestroy() {
    clearInterval(this.timer);
  }
}
