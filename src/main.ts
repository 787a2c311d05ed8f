import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { createApp } from './bootstrap';
import { ConfigValidationError } from './config/app-config';
import { readConfig } from './config/read-config';
import { stopOnSignals } from './lifecycle/stop-on-signals';
import { loadObservabilityConfig } from './observability/observability-config';
import { startTracing } from './observability/tracing/tracing';

async function main() {
  const config = await readConfig();
  // NOTE: after readConfig (which loads .env) and before the application exists, so that every
  // span has the SDK behind it.
  const observability = loadObservabilityConfig();
  startTracing(observability);
  const app = await createApp(config, undefined, observability);
  stopOnSignals(app, config.shutdownTimeoutMs);
  const logger = new Logger('Main');
  if (config.role === 'worker') {
    if (config.healthPort === undefined) {
      logger.log('worker started (no HTTP: set HEALTH_PORT for health checks)');
      return;
    }
    await app.listen(config.healthPort);
    logger.log(`worker started (health checks on ${await app.getUrl()})`);
    return;
  }
  await app.listen(config.port);
  logger.log(
    `${config.role === 'all' ? 'API and worker' : 'API'} listening on ${await app.getUrl()}`,
  );
}

main().catch((error: unknown) => {
  // NOTE: a bad configuration is the operator's to fix: its message, without a stack.
  console.error(error instanceof ConfigValidationError ? error.message : error);
  process.exit(1);
});
