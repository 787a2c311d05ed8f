import { Global, Module, OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, AppConfig } from '../config/app-config';
import { SsrfPolicy } from './ssrf-guard';
import { WebhookSender } from './webhook-sender';

/** The SSRF policy and the outbound sender, configured from `AppConfig`. */
@Global()
@Module({
  providers: [
    {
      provide: SsrfPolicy,
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => new SsrfPolicy(config.allowSubnets),
    },
    {
      provide: WebhookSender,
      inject: [APP_CONFIG, SsrfPolicy],
      useFactory: (config: AppConfig, policy: SsrfPolicy) =>
        new WebhookSender({ policy, timeoutMs: config.deliveryTimeoutMs }),
    },
  ],
  exports: [SsrfPolicy, WebhookSender],
})
export class WebhooksHttpModule implements OnApplicationShutdown {
  constructor(private readonly sender: WebhookSender) {}

  // NOTE: not onModuleDestroy: the deliveries in flight are still sending then (they finish
  // in GracefulShutdown's onModuleDestroy), and destroying the agents would cut them off.
  onApplicationShutdown() {
    this.sender.close();
  }
}
