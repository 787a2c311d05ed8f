import { INestApplication, Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { AppModule } from './app.module';
import type { AppConfig } from './config/app-config';
import { answerClientErrorsAsJson } from './http/client-errors';
import { applySecurityHeaders } from './http/security-headers';
import { validationPipe } from './http/validation';
import { setupOpenApi } from './openapi/openapi';

/** Creates and initialises the service (migrations run during init); does not listen. */
export async function createApp(
  config: AppConfig,
  logger: false | Logger | undefined = undefined,
): Promise<INestApplication> {
  const app = await NestFactory.create<NestExpressApplication>(
    AppModule.forRoot(config),
    {
      // NOTE: bodies are read by JsonBodyGuard, after authentication (see app.module.ts).
      bodyParser: false,
      logger: logger === false ? false : undefined,
    },
  );
  app.set('trust proxy', false);
  applySecurityHeaders(app);
  answerClientErrorsAsJson(app.getHttpServer());
  app.useGlobalPipes(validationPipe());
  // NOTE: a worker serves its health checks alone (health/worker-routes.middleware.ts).
  if (config.role !== 'worker') setupOpenApi(app);
  // NOTE: no enableShutdownHooks(): main.ts stops on signals (lifecycle/stop-on-signals.ts).
  await app.init();
  return app;
}
