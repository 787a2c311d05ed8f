import {
  CanActivate,
  ExecutionContext,
  Injectable,
  ServiceUnavailableException,
  SetMetadata,
  applyDecorators,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ApiResponse } from '@nestjs/swagger';
import type { Response } from 'express';
import { ErrorResponseDto } from '../openapi/error-response.dto';
import { EventLoopPressure } from './event-loop-pressure';

/** Metadata key of the routes refused while the process is overloaded. */
export const SHED_UNDER_LOAD = 'load-shedding:shed-under-load';

/** Seconds a refused caller is asked to wait (`Retry-After`). */
export const SHED_RETRY_AFTER_S = 1;

/**
 * Marks a route that creates work for the workers (events, hence deliveries): while this
 * process's event loop is busy (`API_SHED_LOOP_UTILIZATION`), it answers 503 with
 * `Retry-After` before anything is read or written, so that the process keeps the CPU for the
 * work it has accepted. Documented in the OpenAPI document as a 503.
 */
export const ShedUnderLoad = () =>
  applyDecorators(
    SetMetadata(SHED_UNDER_LOAD, true),
    ApiResponse({
      status: 503,
      description:
        'The service is overloaded and accepted nothing; retry after `Retry-After` seconds ' +
        '(with the same `Idempotency-Key`, if any).',
      type: ErrorResponseDto,
      headers: {
        'Retry-After': {
          description: 'Seconds to wait before retrying.',
          schema: { type: 'integer' },
        },
      },
    }),
  );

/**
 * Load shedding (global guard, the first to run: nothing is authenticated, read or written
 * for a refused request). A process running the API and the worker in one event loop
 * (`PROCESS_ROLE=all`) under more requests than it can serve gave the requests nearly all of
 * its CPU and delivered almost nothing; refusing new work while the loop is never idle lets the
 * deliveries go on at the rate the process can sustain.
 */
@Injectable()
export class LoadShedGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly pressure: EventLoopPressure,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    if (context.getType() !== 'http') return true;
    const shed = this.reflector.getAllAndOverride<boolean>(SHED_UNDER_LOAD, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (!shed || !this.pressure.overloaded) return true;
    context
      .switchToHttp()
      .getResponse<Response>()
      .setHeader('Retry-After', String(SHED_RETRY_AFTER_S));
    throw new ServiceUnavailableException(
      `The service is overloaded (its event loop is ${this.pressure.utilization}% busy) ` +
        `and accepted nothing; retry after ${SHED_RETRY_AFTER_S} s.`,
    );
  }
}
