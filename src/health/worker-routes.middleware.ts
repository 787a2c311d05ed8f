import { Inject, Injectable, NestMiddleware } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { APP_CONFIG, AppConfig } from '../config/app-config';

/**
 * A worker-only process listens on `HEALTH_PORT` for its health checks and its metrics alone:
 * every other route answers 404 there, as it would on a process without the API.
 */
@Injectable()
export class WorkerRoutesMiddleware implements NestMiddleware {
  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  use(request: Request, response: Response, next: NextFunction) {
    // NOTE: `request.path` is relative to where Nest mounts the middleware; the URL is not.
    const path = request.originalUrl.split('?')[0];
    if (
      this.config.role !== 'worker' ||
      path === '/health' ||
      path.startsWith('/health/') ||
      path === '/metrics'
    ) {
      next();
      return;
    }
    response.status(404).json({
      statusCode: 404,
      error: 'Not Found',
      message: `Cannot ${request.method} ${path}: a worker process serves only /health, /health/live, /health/ready and /metrics`,
    });
  }
}
