import { Global, Module } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/app-config';
import { SecretBox } from './secret-box';
import { SecretsSealer } from './secrets-sealer';

/** `SecretBox` from `SECRETS_ENCRYPTION_KEYS`, and the start-up sealing of older rows. */
@Global()
@Module({
  providers: [
    {
      provide: SecretBox,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => new SecretBox(config.encryptionKeys),
    },
    SecretsSealer,
  ],
  exports: [SecretBox],
})
export class SecretsModule {}
