import { INestApplication, Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { AppModule } from './app.module';
import type { AppConfig } from './config/app-config';
import { useJsonBodies } from './http/json-body';
import { validationPipe } from './http/validation';

/** Creates and initialises the service (migrations run during init); does not listen. */
export async function createApp(
  config: AppConfig,
  logger: false | Logger | undefined = undefined,
): Promise<INestApplication> {
  const app = await NestFactory.create<NestExpressApplication>(
    AppModule.forRoot(config),
    {
      bodyParser: false,
      logger: logger === false ? false : undefined,
    },
  );
  app.set('trust proxy', false);
  useJsonBodies(app);
  app.useGlobalPipes(validationPipe());
  // NOTE: no enableShutdownHooks(): main.ts stops on signals (lifecycle/stop-on-signals.ts).
  await app.init();
  return app;
}
