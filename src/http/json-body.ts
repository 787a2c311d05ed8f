import type { INestApplication, RawBodyRequest } from '@nestjs/common';
import express, { NextFunction, Request, Response } from 'express';

/** Largest request body accepted (an event payload may be up to 256 KiB of it). */
export const MAX_BODY = '300kb';

function error(
  res: Response,
  statusCode: number,
  error: string,
  message: string,
) {
  res.status(statusCode).json({ statusCode, error, message });
}

/** Refuses request bodies that are not JSON with a 415 that says what to send. */
function requireJson(req: Request, res: Response, next: NextFunction) {
  const hasBody =
    req.headers['transfer-encoding'] !== undefined ||
    Number(req.headers['content-length'] ?? 0) > 0;
  if (hasBody && !req.is('application/json')) {
    return error(
      res,
      415,
      'Unsupported Media Type',
      `Content-Type must be application/json, got "${req.headers['content-type'] ?? 'none'}"`,
    );
  }
  next();
}

/** Turns body-parser failures into JSON errors a person can act on. */
function bodyErrors(
  err: any,
  _req: Request,
  res: Response,
  next: NextFunction,
) {
  if (!err || typeof err.type !== 'string') return next(err);
  switch (err.type) {
    case 'entity.parse.failed':
      return error(
        res,
        400,
        'Bad Request',
        `Malformed JSON body: ${err.message}`,
      );
    case 'entity.too.large':
      return error(
        res,
        413,
        'Payload Too Large',
        `Request body exceeds the limit of ${MAX_BODY}`,
      );
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return error(
        res,
        415,
        'Unsupported Media Type',
        `${err.message}; send UTF-8 JSON`,
      );
    default:
      return error(res, err.status ?? 400, 'Bad Request', err.message);
  }
}

/** Deepest nesting of objects and arrays accepted in a body. */
export const MAX_JSON_DEPTH = 64;

const LONE_SURROGATE =
  /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** What is wrong with a string Postgres cannot store (NUL, broken UTF-16), if anything. */
function badString(value: string): string | undefined {
  if (value.includes('\u0000')) return 'contains a NUL character (\\u0000)';
  if (LONE_SURROGATE.test(value))
    return 'contains an unpaired UTF-16 surrogate';
  return undefined;
}

/**
 * Refuses parsed bodies that would fail later with a 500: nesting deeper than
 * `MAX_JSON_DEPTH` (the validation pipe recurses) and strings or keys Postgres rejects.
 * NOTE: iterative on purpose, so that a deeply nested body cannot overflow the stack here.
 */
function checkJsonValues(req: Request, res: Response, next: NextFunction) {
  const refuse = (what: string, problem: string) =>
    error(
      res,
      400,
      'Bad Request',
      `Invalid JSON body: ${what.slice(0, 200)} ${problem}`,
    );
  const stack: [unknown, string, number][] = [[req.body, 'body', 0]];
  while (stack.length > 0) {
    const [value, path, depth] = stack.pop()!;
    if (typeof value === 'string') {
      const problem = badString(value);
      if (problem) return refuse(path, problem);
    }
    if (value === null || typeof value !== 'object') continue;
    if (depth > MAX_JSON_DEPTH) {
      return refuse(path, `is nested deeper than ${MAX_JSON_DEPTH} levels`);
    }
    for (const [key, child] of Object.entries(value)) {
      const problem = badString(key);
      if (problem) return refuse(`a key in ${path}`, problem);
      stack.push([child, `${path}.${key}`, depth + 1]);
    }
  }
  next();
}

/**
 * JSON body parsing with a size limit and clear errors; the app is created without Nest's.
 * The bytes are kept as `rawBody` for handlers that need the body exactly as sent.
 */
export function useJsonBodies(app: INestApplication) {
  app.use(requireJson);
  app.use(
    express.json({
      limit: MAX_BODY,
      strict: true,
      verify: (req: RawBodyRequest<Request>, _res, buf) => {
        req.rawBody = buf;
      },
    }),
  );
  app.use(bodyErrors);
  app.use(checkJsonValues);
}
