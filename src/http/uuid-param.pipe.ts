import { BadRequestException, ParseUUIDPipe } from '@nestjs/common';

/** `ParseUUIDPipe` with a message that names the parameter. */
export const UuidParam = (name = 'id') =>
  new ParseUUIDPipe({
    exceptionFactory: () =>
      new BadRequestException(
        `${name} must be a UUID, e.g. 3f0c2a1e-8f4b-4c55-9a59-7b1f9f6c2d10`,
      ),
  });
