import { Injectable, OnModuleInit } from '@nestjs/common';
import { AbstractHttpAdapter, HttpAdapterHost } from '@nestjs/core';
import type { Response } from 'express';

/**
 * A response body that is already JSON text and must reach the client byte for byte (an
 * event payload as it was accepted, a replayed idempotent response). Handlers return it;
 * {@link sendRawJsonAsText} writes it out without serialising it again.
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

/** Marks an adapter whose `reply` already sends `RawJson` as text. */
const RAW_JSON_REPLIES = Symbol('rawJsonReplies');

/**
 * Makes `adapter` send `RawJson` results as `application/json` text, byte for byte; any other
 * result goes to the adapter as before. Idempotent.
 *
 * NOTE: done where Nest writes every handler's result (`HttpAdapter.reply`), not by a global
 * interceptor: an interceptor on a route puts each of its requests through Nest's rxjs
 * pipeline, and the service's two global interceptors cost about 10% of the API's CPU on the
 * delay request (bench/README.md, "The API path: what the two global interceptors cost, and
 * both gone").
 */
export function sendRawJsonAsText(adapter: AbstractHttpAdapter | undefined) {
  if (!adapter) return;
  const marked = adapter as AbstractHttpAdapter & { [RAW_JSON_REPLIES]?: true };
  if (marked[RAW_JSON_REPLIES]) return;
  marked[RAW_JSON_REPLIES] = true;
  const reply = adapter.reply.bind(adapter) as AbstractHttpAdapter['reply'];
  adapter.reply = (response: Response, body: unknown, statusCode?: number) => {
    if (!(body instanceof RawJson)) return reply(response, body, statusCode);
    response.setHeader('content-type', 'application/json; charset=utf-8');
    return reply(response, body.text, statusCode);
  };
}

/**
 * Installs {@link sendRawJsonAsText} on the application's HTTP adapter (none in an application
 * context without HTTP) when the module starts, before any request is answered.
 */
@Injectable()
export class RawJsonReplies implements OnModuleInit {
  constructor(private readonly adapterHost: HttpAdapterHost) {}

  onModuleInit() {
    sendRawJsonAsText(this.adapterHost.httpAdapter);
  }
}
