import {
  BadRequestException,
  CanActivate,
  ExecutionContext,
  HttpException,
  HttpStatus,
  Injectable,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { PUBLIC_ROUTE } from '../auth/auth.decorators';
import { assertSupportedCharset, decodeBody } from './body-charset';
import { jsonBodyProblem } from './json-value-check';
import { hasBody, readBody } from './read-body';
import { assertSingleHeader } from './single-header';

/** Largest request body accepted, in bytes (an event payload may be up to 256 KiB of it). */
export const MAX_BODY_BYTES = 300 * 1024;

/** A request once its body has been read: the parsed JSON and its decoded text. */
export type JsonRequest = Request & { rawBodyText?: string };

/** What the body guard has done since start-up (for `GET /health` and the tests). */
export interface JsonBodyStats {
  /** Bodies read from the socket. */
  read: number;
  /** Bytes read. */
  bytes: number;
  /** Bodies parsed as JSON. */
  parsed: number;
}

function unsupportedType(contentType: string | undefined) {
  return new HttpException(
    {
      statusCode: HttpStatus.UNSUPPORTED_MEDIA_TYPE,
      error: 'Unsupported Media Type',
      message: `Content-Type must be application/json, got "${(contentType ?? 'none').slice(0, 100)}"`,
    },
    HttpStatus.UNSUPPORTED_MEDIA_TYPE,
  );
}

/**
 * Reads and parses JSON request bodies. It is a guard registered after the API key guard, so
 * that a request is authenticated before a byte of its body is read: an unauthenticated
 * caller cannot make the service spend CPU on a body. Public routes take no body and never
 * read one. The body is decoded per its charset, parsed once, and checked in one linear pass
 * (see `jsonBodyProblem`); `rawBodyText` keeps the decoded text for handlers that need the
 * body exactly as sent.
 */
@Injectable()
export class JsonBodyGuard implements CanActivate {
  readonly stats: JsonBodyStats = { read: 0, bytes: 0, parsed: 0 };

  constructor(private readonly reflector: Reflector) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (this.reflector.get<boolean>(PUBLIC_ROUTE, context.getHandler())) {
      return true;
    }
    const req = context.switchToHttp().getRequest<JsonRequest>();
    if (!hasBody(req)) return true;
    assertSingleHeader(req, 'Content-Type');
    assertSingleHeader(req, 'Content-Encoding');
    if (!req.is('application/json')) {
      throw unsupportedType(req.headers['content-type']);
    }
    assertSupportedCharset(req.headers['content-type']);
    const bytes = await readBody(req, MAX_BODY_BYTES);
    this.stats.read++;
    this.stats.bytes += bytes.length;
    const text = decodeBody(bytes, req.headers['content-type']);
    let body: unknown;
    try {
      this.stats.parsed++;
      body = JSON.parse(text);
    } catch (error) {
      throw new BadRequestException(
        `Malformed JSON body: ${(error as Error).message}`,
      );
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new BadRequestException(
        'Malformed JSON body: the body must be a JSON object',
      );
    }
    const problem = jsonBodyProblem(body);
    if (problem) {
      throw new BadRequestException(`Invalid JSON body: ${problem}`);
    }
    req.body = body;
    req.rawBodyText = text;
    return true;
  }
}
