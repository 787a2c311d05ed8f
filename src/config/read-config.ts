import { ConfigModule } from '@nestjs/config';
import { AppConfig, loadConfig } from './app-config';

/**
 * The configuration of a service process: @nestjs/config reads `.env` (or the file
 * `ENV_FILE` names; variables already set win) and validates the result with the schema,
 * naming every bad or missing variable at once (`ConfigValidationError`).
 */
export async function readConfig(): Promise<AppConfig> {
  let config: AppConfig | undefined;
  await ConfigModule.forRoot({
    envFilePath: process.env.ENV_FILE || '.env',
    validate: (env) => {
      config = loadConfig(env);
      return env;
    },
  });
  return config!;
}
