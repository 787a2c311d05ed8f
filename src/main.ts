import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { createApp } from './bootstrap';
import { ConfigValidationError } from './config/app-config';
import { readConfig } from './config/read-config';
import { stopOnSignals } from './lifecycle/stop-on-signals';

async function main() {
  const config = await readConfig();
  const app = await createApp(config);
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
