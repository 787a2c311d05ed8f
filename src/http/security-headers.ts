import type { NestExpressApplication } from '@nestjs/platform-express';
import helmet from 'helmet';

/**
 * helmet's security headers on every answer, and no `X-Powered-By` (helmet drops it too; the
 * express setting keeps it off should helmet's options change).
 */
export function applySecurityHeaders(app: NestExpressApplication): void {
  app.disable('x-powered-by');
  app.use(helmet());
}
