import { BullModule } from '@nestjs/bull';
import { DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER, APP_GUARD } from '@nestjs/core';
import { EventLoopPressure } from './load-shedding/event-loop-pressure';
import { LoadShedGuard } from './load-shedding/load-shed.guard';
import { TypeOrmModule } from '@nestjs/typeorm';
import { TransactionalModule } from 'nestjs-transactional-jobs';
import { AccountsModule } from './accounts/accounts.module';
import { ApiKeyGuard } from './auth/api-key.guard';
import { APP_CONFIG, AppConfig } from './config/app-config';
import { dataSourceOptions } from './database/data-source-options';
import { Migrator } from './database/migrator';
import { DeliveriesModule } from './deliveries/deliveries.module';
import { EndpointsModule } from './endpoints/endpoints.module';
import { EventsModule } from './events/events.module';
import { HealthModule } from './health/health.module';
import { JsonBodyGuard } from './http/json-body.guard';
import { PgDataExceptionFilter } from './http/pg-data-exception.filter';
import { AccountThrottlerGuard } from './rate-limit/account-throttler.guard';
import { RateLimitModule } from './rate-limit/rate-limit.module';
import { RawJsonReplies } from './http/raw-json';
import { IdempotencyModule } from './idempotency/idempotency.module';
import { QueueDashboardModule } from './observability/dashboard/queue-dashboard.module';
import { ObservabilityModule } from './observability/observability.module';
import type { ObservabilityConfig } from './observability/observability-config';
import { GracefulShutdown } from './lifecycle/graceful-shutdown';
import { RetentionModule } from './retention/retention.module';
import { usePreparedStatements } from './database/prepared-query';
import { SecretsModule } from './secrets/secrets.module';
import { TripsModule } from './trips/trips.module';
import { WebhooksHttpModule } from './webhooks-http/webhooks-http.module';

/** The webhook delivery service: API, worker, or both, as `config.role` says. */
@Module({})
export class AppModule {
  static forRoot(
    config: AppConfig,
    observability: ObservabilityConfig,
  ): DynamicModule {
    usePreparedStatements(config.preparedStatements);
    return {
      module: AppModule,
      global: true,
      imports: [
        TypeOrmModule.forRoot(
          dataSourceOptions(config.databaseUrl, config.workerConcurrency + 20),
        ),
        BullModule.forRoot({
          url: config.redisUrl,
          prefix: config.bullPrefix,
        }),
        TransactionalModule.forRoot({
          outbox: {
            preparedStatements: config.preparedStatements,
            relay: {
              enabled: config.outboxRelay,
              pollIntervalMs: config.outboxPollIntervalMs,
              graceMs: config.outboxGraceMs,
            },
          },
        }),
        SecretsModule,
        IdempotencyModule,
        WebhooksHttpModule,
        AccountsModule,
        EndpointsModule,
        TripsModule,
        EventsModule,
        DeliveriesModule,
        HealthModule,
        RetentionModule,
        RateLimitModule,
        ObservabilityModule.forRoot(observability),
        ...(config.role === 'worker' ? [] : [QueueDashboardModule]),
      ],
      providers: [
        { provide: APP_CONFIG, useValue: config },
        Migrator,
        GracefulShutdown,
        EventLoopPressure,
        // NOTE: global guards run in this order: a request shed under load costs nothing more;
        // the body is read only once the caller is known.
        { provide: APP_GUARD, useClass: LoadShedGuard },
        { provide: APP_GUARD, useClass: ApiKeyGuard },
        // NOTE: per account, so after authentication, and before a throttled body is read.
        { provide: APP_GUARD, useExisting: AccountThrottlerGuard },
        JsonBodyGuard,
        { provide: APP_GUARD, useExisting: JsonBodyGuard },
        // NOTE: no global interceptor (each would put every request through Nest's rxjs
        // pipeline): RawJson results (idempotent replays among them) are written by the HTTP
        // adapter's reply (http/raw-json.ts), and POST handlers are @Idempotent().
        RawJsonReplies,
        // NOTE: values Postgres refuses (SQLSTATE class 22) are the request's fault: 400, not 500.
        { provide: APP_FILTER, useClass: PgDataExceptionFilter },
      ],
      exports: [APP_CONFIG, JsonBodyGuard],
    };
  }
}
