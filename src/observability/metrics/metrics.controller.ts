import { Controller, Get, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { AdminRoute } from '../../auth/auth.decorators';
import {
  ADMIN_TOKEN_SCHEME,
  ApiErrors,
} from '../../openapi/api-docs.decorators';
import { AppMetrics } from './app-metrics';

/** `GET /metrics`: the Prometheus exposition, for `Authorization: Bearer <ADMIN_TOKEN>`. */
@ApiTags('metrics')
@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: AppMetrics) {}

  @Get()
  @AdminRoute()
  @ApiBearerAuth(ADMIN_TOKEN_SCHEME)
  // NOTE: the 200 alone is text (not `@ApiProduces`, which would make the 401 text too).
  @ApiOkResponse({
    description: 'Prometheus text exposition (version 0.0.4) of every metric.',
    content: { 'text/plain': { schema: { type: 'string' } } },
  })
  @ApiErrors(401)
  async render(@Res() res: Response): Promise<void> {
    const text = await this.metrics.registry.metrics();
    res.type(this.metrics.registry.contentType).send(text);
  }
}
