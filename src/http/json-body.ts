import type { INestApplication } from '@nestjs/common';
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

/** JSON body parsing with a size limit and clear errors; the app is created without Nest's. */
export function useJsonBodies(app: INestApplication) {
  app.use(requireJson);
  app.use(express.json({ limit: MAX_BODY, strict: true }));
  app.use(bodyErrors);
}
