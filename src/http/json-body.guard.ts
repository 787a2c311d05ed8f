import {
  BadRequestException,
  CanActivate,
  ExecutionContext,
  HttpException,
  HttpStatus,
  Injectable,
} from '@nestjs/common';
import { PATH_METADATA, ROUTE_ARGS_METADATA } from '@nestjs/common/constants';
import { RouteParamtypes } from '@nestjs/common/enums/route-paramtypes.enum';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { PUBLIC_ROUTE } from '../auth/auth.decorators';
import { assertSupportedCharset, decodeBody } from './body-charset';
import { jsonBodyProblem, rawJsonProblem } from './json-value-check';
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
 * The first query key of a request to a `/v1` route that takes no query (no `@Query()`), if it
 * has one. The routes with a query refuse unknown keys in their DTO (validation pipe); the others
 * never read the query, so a key there (`?dryRun=true`, `?__proto__=1`) would be silently ignored
 * while the request runs. Read from the raw query string: Express's parser drops `__proto__`.
 */
function unexpectedQueryKey(
  context: ExecutionContext,
  req: Request,
): string | undefined {
  const path: unknown = Reflect.getMetadata(PATH_METADATA, context.getClass());
  if (typeof path !== 'string' || !/^\/?v1(\/|$)/.test(path)) return undefined;
  const args: Record<string, unknown> =
    Reflect.getMetadata(
      ROUTE_ARGS_METADATA,
      context.getClass(),
      context.getHandler().name,
    ) ?? {};
  const query = String(RouteParamtypes.QUERY);
  if (Object.keys(args).some((key) => key.split(':')[0] === query)) {
    return undefined;
  }
  const search = req.originalUrl.split('?').slice(1).join('?');
  for (const [key] of new URLSearchParams(search)) return key;
  return undefined;
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
    const key = unexpectedQueryKey(context, req);
    if (key !== undefined) {
      throw new BadRequestException(
        `property ${key.slice(0, 100)} should not exist: this route takes no query parameters`,
      );
    }
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
    // NOTE: the text too: a repeated member name hides a value from the parsed body only.
    const problem = jsonBodyProblem(body) ?? rawJsonProblem(text);
    if (problem) {
      throw new BadRequestException(`Invalid JSON body: ${problem}`);
    }
    req.body = body;
    req.rawBodyText = text;
    return true;
  }
}
