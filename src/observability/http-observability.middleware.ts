import { Injectable, NestMiddleware } from '@nestjs/common';
import { SpanKind, SpanStatusCode, context, trace } from '@opentelemetry/api';
import type { NextFunction, Request, Response } from 'express';
import type { Histogram } from 'prom-client';
import { AppMetrics } from './metrics/app-metrics';
import {
  contextFrom,
  serviceTracer,
  startServiceSpan,
} from './tracing/tracing';

type Label = 'method' | 'route' | 'status_code';

/** Route label of requests no route matched: never the raw path (it may hold ids). */
const UNMATCHED = 'unmatched';

/**
 * Paths routers are mounted on (the queue dashboard). `req.baseUrl` is the part of the URL the
 * mount matched *as the caller spelled it* (Express matches case-insensitively): only these
 * spellings may reach a label.
 */
const MOUNTS = ['/admin/queues'];

/**
 * The route template a request matched (`/v1/trips/:id/delays`), or `unmatched`. Express keeps
 * the matched route on the request; a router mounted on a fixed path (the dashboard) adds it.
 * A catch-all (`{/*splat}`, Nest's not-found route) counts as unmatched.
 */
export function routeTemplate(req: Request): string {
  const path = (req.route as { path?: unknown } | undefined)?.path;
  if (typeof path !== 'string' || path.includes('*')) return UNMATCHED;
  if (!req.baseUrl) return path;
  const base = req.baseUrl.toLowerCase();
  const mount = MOUNTS.find((m) => m === base);
  return mount ? `${mount}${path}` : UNMATCHED;
}

/**
 * Times every HTTP request into `http_request_duration_seconds` (method, route template,
 * status) and, while tracing is on, makes it a server span that continues an incoming
 * `traceparent` and is the parent of everything the request does.
 */
@Injectable()
export class HttpObservabilityMiddleware implements NestMiddleware {
  /**
   * Histogram children by "method route status": observing a cached child skips hashing the
   * labels. Bounded: methods are those Node parses, routes are templates, statuses are codes.
   */
  private readonly series = new Map<string, Histogram.Internal<Label>>();

  constructor(private readonly metrics: AppMetrics) {}

  use(req: Request, res: Response, next: NextFunction): void {
    const started = process.hrtime.bigint();
    const span = serviceTracer()
      ? startServiceSpan(req.method, SpanKind.SERVER, contextFrom(req.headers))
      : undefined;
    res.once('finish', () => {
      const route = routeTemplate(req);
      const status = res.statusCode;
      const key = `${req.method} ${route} ${status}`;
      let series = this.series.get(key);
      if (!series) {
        series = this.metrics.httpRequests.labels({
          method: req.method,
          route,
          status_code: status,
        });
        this.series.set(key, series);
      }
      series.observe(Number(process.hrtime.bigint() - started) / 1e9);
      if (span) {
        span.updateName(`${req.method} ${route}`);
        span.setAttributes({
          'http.request.method': req.method,
          'http.route': route,
          'http.response.status_code': status,
        });
        if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
      }
    });
    if (!span) return next();
    context.with(trace.setSpan(context.active(), span), next);
  }
}
