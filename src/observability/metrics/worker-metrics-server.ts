import {
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
  OnApplicationShutdown,
} from '@nestjs/common';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { APP_CONFIG, AppConfig } from '../../config/app-config';
import { carriesAdminToken } from '../admin-auth';
import { OBSERVABILITY_CONFIG } from '../observability.constants';
import type { ObservabilityConfig } from '../observability-config';
import { AppMetrics } from './app-metrics';

/**
 * `GET /metrics` of a worker process (which has no HTTP server of its own) on
 * `WORKER_METRICS_PORT`, behind the admin token like the API's. Nothing else is served.
 */
@Injectable()
export class WorkerMetricsServer
  implements OnApplicationBootstrap, OnApplicationShutdown
{
  private readonly logger = new Logger(WorkerMetricsServer.name);
  private server?: http.Server;

  constructor(
    private readonly metrics: AppMetrics,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(OBSERVABILITY_CONFIG)
    private readonly observability: ObservabilityConfig,
  ) {}

  /** The port it listens on, once listening. */
  get port(): number | undefined {
    return (this.server?.address() as AddressInfo | null)?.port;
  }

  async onApplicationBootstrap(): Promise<void> {
    const port = this.observability.workerMetricsPort;
    if (this.config.role !== 'worker' || port === undefined) return;
    const server = http.createServer((req, res) => void this.answer(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, () => resolve());
    });
    this.server = server;
    this.logger.log(`worker metrics on port ${this.port} (GET /metrics)`);
  }

  async onApplicationShutdown(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }

  private async answer(req: http.IncomingMessage, res: http.ServerResponse) {
    const json = (status: number, message: string) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ statusCode: status, message }));
    };
    if (req.url !== '/metrics' || req.method !== 'GET') {
      return json(404, 'Only GET /metrics is served on this port');
    }
    if (!this.config.adminToken) {
      return json(
        403,
        'Metrics are disabled: the server has no ADMIN_TOKEN set',
      );
    }
    if (!carriesAdminToken(req.headers.authorization, this.config.adminToken)) {
      return json(401, 'Send "Authorization: Bearer <ADMIN_TOKEN>"');
    }
    try {
      const text = await this.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
      res.end(text);
    } catch (error) {
      this.logger.error(`metrics: ${String(error)}`);
      json(500, 'Metrics could not be collected');
    }
  }
}
