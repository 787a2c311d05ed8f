import { ValidationPipe } from '@nestjs/common';

/**
 * Request validation: unknown fields and wrong types are 400s that name the field; nothing
 * reaches a handler unvalidated.
 */
export function validationPipe(): ValidationPipe {
  return new ValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    forbidUnknownValues: true,
    transform: true,
    validateCustomDecorators: false,
  });
}
