import { Inject, Injectable, NestMiddleware } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { APP_CONFIG, AppConfig } from '../../config/app-config';
import { carriesAdminToken } from '../admin-auth';

/**
 * The dashboard's gate: the admin token as a Bearer token, or as the password of the browser's
 * Basic login prompt (any user name). Bull Board's routes are plain Express routes, so the
 * global API key guard does not see them.
 */
@Injectable()
export class DashboardAuthMiddleware implements NestMiddleware {
  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  use(req: Request, res: Response, next: NextFunction): void {
    if (!this.config.adminToken) {
      res.status(403).json({
        statusCode: 403,
        message:
          'The queue dashboard is disabled: the server has no ADMIN_TOKEN set',
      });
      return;
    }
    const copies = req.rawHeaders.filter(
      (_, i) =>
        i % 2 === 0 && req.rawHeaders[i].toLowerCase() === 'authorization',
    ).length;
    if (copies > 1) {
      // Node keeps the first copy: which one was meant cannot be told (README, Requests).
      res.status(400).json({
        statusCode: 400,
        error: 'Bad Request',
        message: `Send one Authorization header; this request has ${copies}`,
      });
      return;
    }
    if (!carriesAdminToken(req.headers.authorization, this.config.adminToken)) {
      res
        .status(401)
        .setHeader('WWW-Authenticate', 'Basic realm="queues", charset="UTF-8"')
        .json({
          statusCode: 401,
          message:
            'Send the admin token: "Authorization: Bearer <ADMIN_TOKEN>", or log in with ' +
            'any user name and the admin token as the password',
        });
      return;
    }
    this.answerInTime(req, res);
    next();
  }

  /**
   * Bull Board's API waits on Redis with no limit: while Redis is paused or unreachable a page
   * would spin forever (each request holding a socket). Past three health-check timeouts the
   * request is answered 503, and Bull Board's late answer is dropped.
   */
  private answerInTime(req: Request, res: Response): void {
    if (!req.originalUrl.split('?')[0].includes('/api/')) return;
    const ms = 3 * this.config.healthCheckTimeoutMs;
    const timer = setTimeout(() => {
      if (res.headersSent) return;
      res
        .status(503)
        .setHeader('Retry-After', '5')
        .json({
          statusCode: 503,
          error: 'Service Unavailable',
          message: `The queue dashboard got no answer from Redis within ${ms} ms: see GET /health/ready`,
        });
      const late = () => res;
      res.status = late;
      res.json = late;
      res.send = late;
      res.end = late as unknown as Response['end'];
      res.setHeader = late as unknown as Response['setHeader'];
    }, ms);
    res.once('close', () => clearTimeout(timer));
  }
}
