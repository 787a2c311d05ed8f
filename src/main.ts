import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { createApp } from './bootstrap';
import { loadConfig } from './config/app-config';
import { stopOnSignals } from './lifecycle/stop-on-signals';
import { loadObservabilityConfig } from './observability/observability-config';
import { startTracing } from './observability/tracing/tracing';

async function main() {
  const config = loadConfig();
  const observability = loadObservabilityConfig();
  // NOTE: before the application exists, so that every span has the SDK behind it.
  startTracing(observability);
  const app = await createApp(config, undefined, observability);
  stopOnSignals(app, config.shutdownTimeoutMs);
  const logger = new Logger('Main');
  if (config.role === 'worker') {
    logger.log('worker started (no HTTP)');
    return;
  }
  await app.listen(config.port);
  logger.log(
    `${config.role === 'all' ? 'API and worker' : 'API'} listening on ${await app.getUrl()}`,
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
