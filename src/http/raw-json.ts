import {
  CallHandler,
  ExecutionContext,
  Injectable,
  NestInterceptor,
} from '@nestjs/common';
import type { Response } from 'express';
import { Observable, map } from 'rxjs';

/**
 * A response body that is already JSON text and must reach the client byte for byte (an
 * event payload as it was accepted, a replayed idempotent response). Handlers return it;
 * {@link RawJsonInterceptor} writes it out without serialising it again.
 */
export class RawJson {
  constructor(readonly text: string) {}

  /**
   * A JSON object from members that are already JSON text (`RawJson`) or plain values
   * (serialised here), in the given order.
   */
  static object(members: Record<string, unknown>): RawJson {
    const parts: string[] = [];
    for (const [key, value] of Object.entries(members)) {
      if (value === undefined) continue;
      parts.push(`${JSON.stringify(key)}:${RawJson.textOf(value)}`);
    }
    return new RawJson(`{${parts.join(',')}}`);
  }

  /** The JSON text of any handler result. */
  static textOf(body: unknown): string {
    return body instanceof RawJson ? body.text : JSON.stringify(body ?? null);
  }
}

/** Sends `RawJson` results as `application/json` text; anything else passes through. */
@Injectable()
export class RawJsonInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(
      map((body: unknown) => {
        if (!(body instanceof RawJson)) return body;
        context
          .switchToHttp()
          .getResponse<Response>()
          .setHeader('content-type', 'application/json; charset=utf-8');
        return body.text;
      }),
    );
  }
}
