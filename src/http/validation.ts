import {
  ArgumentMetadata,
  ValidationPipe,
  type ValidationPipeOptions,
} from '@nestjs/common';
import { ValidationError, getMetadataStorage } from 'class-validator';

/**
 * A ValidationPipe that also refuses the keys it would otherwise drop without a word. Nest
 * strips `__proto__` (and `constructor`, `prototype`) from a value before validating it, and
 * class-transformer skips every key whose name is a method of the DTO's prototype
 * (`toString`, `hasOwnProperty`, `valueOf`, ... from Object.prototype): so
 * `forbidNonWhitelisted` never sees them and `?toString=1` or `?__proto__=1` were silently
 * ignored. Such a key is now an unknown property like any other (400), in a query string, a
 * body or any other validated value.
 */
class StrictValidationPipe extends ValidationPipe {
  constructor(private readonly options: ValidationPipeOptions) {
    super(options);
  }

  override async transform(value: unknown, metadata: ArgumentMetadata) {
    const metatype = metadata.metatype;
    if (
      this.options.forbidNonWhitelisted &&
      metatype &&
      this.toValidate(metadata) &&
      value !== null &&
      typeof value === 'object'
    ) {
      const errors = droppedKeys(value, metatype).map((property) =>
        Object.assign(new ValidationError(), {
          property,
          value: (value as Record<string, unknown>)[property],
          constraints: {
            whitelistValidation: `property ${property} should not exist`,
          },
          children: [],
        }),
      );
      if (errors.length > 0) throw await this.exceptionFactory(errors);
    }
    return super.transform(value, metadata);
  }
}

/** Own keys of `value` that name prototype members of the DTO and that it does not declare. */
function droppedKeys(value: object, metatype: ArgumentMetadata['metatype']) {
  const declared = new Set(
    getMetadataStorage()
      .getTargetValidationMetadatas(metatype!, '', true, false)
      .map((m) => m.propertyName),
  );
  const prototype = (metatype as { prototype?: object }).prototype ?? {};
  return Object.keys(value).filter(
    (key) =>
      !declared.has(key) &&
      (key === '__proto__' || key === 'prototype' || key in prototype),
  );
}

/**
 * Request validation: unknown fields and wrong types are 400s that name the field; nothing
 * reaches a handler unvalidated.
 */
export function validationPipe(): ValidationPipe {
  return new StrictValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    forbidUnknownValues: true,
    transform: true,
    validateCustomDecorators: false,
  });
}
