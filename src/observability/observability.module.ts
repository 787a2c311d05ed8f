import {
  DynamicModule,
  MiddlewareConsumer,
  Module,
  NestModule,
  RequestMethod,
} from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import { DeliveryObservability } from './delivery-observability';
import { HttpObservabilityMiddleware } from './http-observability.middleware';
import { loggerParams } from './logging/logger-params';
import { AppMetrics } from './metrics/app-metrics';
import { MetricsController } from './metrics/metrics.controller';
import { OBSERVABILITY_CONFIG } from './observability.constants';
import type { ObservabilityConfig } from './observability-config';

/**
 * JSON logs (nestjs-pino), Prometheus metrics (`GET /metrics`, on a worker's `HEALTH_PORT` too) and the service's OpenTelemetry spans (tracing itself is started by `startTracing`
 * before the application is created).
 */
@Module({})
export class ObservabilityModule implements NestModule {
  static forRoot(config: ObservabilityConfig): DynamicModule {
    return {
      module: ObservabilityModule,
      global: true,
      imports: [LoggerModule.forRoot(loggerParams(config))],
      controllers: [MetricsController],
      providers: [
        { provide: OBSERVABILITY_CONFIG, useValue: config },
        AppMetrics,
        DeliveryObservability,
      ],
      exports: [OBSERVABILITY_CONFIG, AppMetrics, DeliveryObservability],
    };
  }

  configure(consumer: MiddlewareConsumer): void {
    consumer
      .apply(HttpObservabilityMiddleware)
      .forRoutes({ path: '{*path}', method: RequestMethod.ALL });
  }
}
