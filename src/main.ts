import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { createApp } from './bootstrap';
import { loadConfig } from './config/app-config';
import { stopOnSignals } from './lifecycle/stop-on-signals';

async function main() {
  const config = loadConfig();
  const app = await createApp(config);
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
