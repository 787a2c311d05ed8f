import { LoggerService } from '@nestjs/common';

/** One line written through Nest's `Logger`. */
export interface LogEntry {
  level: 'log' | 'error' | 'warn' | 'debug' | 'verbose' | 'fatal';
  message: string;
  context?: string;
}

/**
 * A `LoggerService` that records every line (pass it as `createLibApp({ logger })`, which makes
 * it the static logger every `new Logger(context)` writes through). Prints nothing unless
 * `TEST_LOGS` is set.
 */
export class CapturingLogger implements LoggerService {
  readonly entries: LogEntry[] = [];

  log(message: unknown, ...rest: unknown[]) {
    this.record('log', message, rest);
  }
  error(message: unknown, ...rest: unknown[]) {
    this.record('error', message, rest);
  }
  warn(message: unknown, ...rest: unknown[]) {
    this.record('warn', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]) {
    this.record('debug', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]) {
    this.record('verbose', message, rest);
  }
  fatal(message: unknown, ...rest: unknown[]) {
    this.record('fatal', message, rest);
  }

  /** The lines of one level (and context, when given), oldest first. */
  lines(level: LogEntry['level'], context?: string): LogEntry[] {
    return this.entries.filter(
      (entry) =>
        entry.level === level &&
        (context === undefined || entry.context === context),
    );
  }

  /** Forgets everything recorded so far. */
  clear() {
    this.entries.length = 0;
  }

  private record(level: LogEntry['level'], message: unknown, rest: unknown[]) {
    // NOTE: Nest passes the context as the last argument (after the stack, for errors).
    const last = rest[rest.length - 1];
    const entry: LogEntry = {
      level,
      message: String(message),
      context: typeof last === 'string' ? last : undefined,
    };
    this.entries.push(entry);
    if (process.env.TEST_LOGS) {
      console.log(`[${entry.level}] ${entry.context ?? '-'}: ${entry.message}`);
    }
  }
}
