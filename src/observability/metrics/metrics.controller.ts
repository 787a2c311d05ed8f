import { Controller, Get, Res } from '@nestjs/common';
import type { Response } from 'express';
import { AdminRoute } from '../../auth/auth.decorators';
import { AppMetrics } from './app-metrics';

/** `GET /metrics`: the Prometheus exposition, for `Authorization: Bearer <ADMIN_TOKEN>`. */
@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: AppMetrics) {}

  @Get()
  @AdminRoute()
  async render(@Res() res: Response): Promise<void> {
    const text = await this.metrics.registry.metrics();
    res.type(this.metrics.registry.contentType).send(text);
  }
}
