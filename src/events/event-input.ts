import { BadRequestException } from '@nestjs/common';
import type { JsonRequest } from '../http/json-body.guard';
import { topLevelMembers } from '../http/json-members';
import { validationPipe } from '../http/validation';
import { CreateEventDto } from './dto/create-event.dto';

/** A validated `POST /v1/events` body, with the payload as the JSON text the caller sent. */
export interface EventInput {
  type: string;
  payloadText: string;
}

const validator = validationPipe();

/**
 * Validates a `POST /v1/events` body and takes its payload exactly as written: the payload is
 * the customer's free-form data, forwarded byte for byte (key order, spacing, number
 * spelling, keys such as `__proto__` or `constructor`). Only the envelope goes through the
 * validation pipe, with the payload replaced by `{}`, so the payload is neither copied nor
 * changed by class-transformer.
 */
export async function readEventInput(req: JsonRequest): Promise<EventInput> {
  const body = (req.body ?? {}) as Record<string, unknown>;
  const envelope: Record<string, unknown> = { ...body };
  const { payload } = body;
  const isObject =
    payload !== null && typeof payload === 'object' && !Array.isArray(payload);
  if (isObject) envelope.payload = {};
  const dto = (await validator.transform(envelope, {
    type: 'body',
    metatype: CreateEventDto,
  })) as CreateEventDto;
  const span = req.rawBodyText
    ? topLevelMembers(req.rawBodyText).get('payload')
    : undefined;
  if (!span) throw new BadRequestException('payload must be an object');
  return {
    type: dto.type,
    payloadText: req.rawBodyText!.slice(span.start, span.end),
  };
}
