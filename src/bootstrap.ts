import { INestApplication, Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Logger as PinoNestLogger } from 'nestjs-pino';
import { AppModule } from './app.module';
import type { AppConfig } from './config/app-config';
import { answerClientErrorsAsJson } from './http/client-errors';
import { applySecurityHeaders } from './http/security-headers';
import { validationPipe } from './http/validation';
import { setupOpenApi } from './openapi/openapi';
import {
  ObservabilityConfig,
  loadObservabilityConfig,
} from './observability/observability-config';

/**
 * Creates and initialises the service (migrations run during init); does not listen. Logs are
 * JSON lines (nestjs-pino); `logger: false` silences them unless `observability` names a
 * destination.
 */
export async function createApp(
  config: AppConfig,
  logger: false | Logger | undefined = undefined,
  observability: ObservabilityConfig = loadObservabilityConfig(),
): Promise<INestApplication> {
  const silent = logger === false && !observability.logDestination;
  const app = await NestFactory.create<NestExpressApplication>(
    AppModule.forRoot(
      config,
      silent ? { ...observability, logLevel: 'silent' } : observability,
    ),
    {
      // NOTE: bodies are read by JsonBodyGuard, after authentication (see app.module.ts).
      bodyParser: false,
      bufferLogs: true,
    },
  );
  app.useLogger(app.get(PinoNestLogger));
  app.set('trust proxy', false);
  applySecurityHeaders(app);
  answerClientErrorsAsJson(app.getHttpServer());
  app.useGlobalPipes(validationPipe());
  // NOTE: a worker serves its health checks alone (health/worker-routes.middleware.ts).
  if (config.role !== 'worker') setupOpenApi(app);
  // NOTE: no enableShutdownHooks(): main.ts stops on signals (lifecycle/stop-on-signals.ts).
  await app.init();
  // NOTE: bufferLogs holds every line until flushed; listen() flushes, but a worker without
  // HEALTH_PORT never listens (its "worker started" line and every later one stayed buffered).
  app.flushLogs();
  return app;
}
