import { INestApplication, Logger } from '@nestjs/common';
import { GracefulShutdown } from './graceful-shutdown';

/** Time for closing the connections once the work in flight is over or given up on. */
const CLOSE_GRACE_MS = 5_000;

/**
 * On SIGTERM or SIGINT: stop taking work at once, close the app (it waits at most `timeoutMs`
 * for the work in flight, then closes its connections) and let the process exit, with code 0
 * unless work was given up on. A process still alive `timeoutMs` + 5 s after the signal exits
 * with code 1. A second signal is ignored.
 *
 * NOTE: instead of `app.enableShutdownHooks()`, which ends the process by raising the signal
 * again once closed (no exit code 0) and does not stop intake before other hooks run.
 */
export function stopOnSignals(app: INestApplication, timeoutMs: number) {
  const logger = new Logger('Shutdown');
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn(`${signal} received again: already shutting down`);
      return;
    }
    stopping = true;
    logger.log(`${signal} received: shutting down`);
    const shutdown = app.get(GracefulShutdown);
    shutdown.stopIntake();
    const backstop = setTimeout(() => {
      logger.error(
        `not shut down ${timeoutMs + CLOSE_GRACE_MS} ms after ${signal}; exiting`,
      );
      process.exit(1);
    }, timeoutMs + CLOSE_GRACE_MS);
    // NOTE: unref'd: a clean close lets the process end by itself, before it fires.
    backstop.unref();
    app.close().then(
      () => {
        logger.log('shut down');
        process.exitCode = shutdown.timedOut ? 1 : 0;
      },
      (error: unknown) => {
        logger.error(
          `shutdown failed: ${error instanceof Error ? error.stack : String(error)}`,
        );
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
