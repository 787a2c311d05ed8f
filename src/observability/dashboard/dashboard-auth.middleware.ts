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
    next();
  }
}
