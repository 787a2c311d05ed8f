import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import {
  ArrayMaxSize,
  IsArray,
  IsOptional,
  IsString,
  Matches,
  MaxLength,
} from 'class-validator';
import {
  EVENT_TYPE_MESSAGE,
  EVENT_TYPE_PATTERN,
} from '../../events/event-type';

/** Body of `POST /v1/endpoints`. */
export class CreateEndpointDto {
  @ApiProperty({
    maxLength: 2048,
    example: 'https://example.com/webhooks',
    description:
      'http(s) URL; private, loopback and metadata addresses are refused (422).',
  })
  @IsString()
  @MaxLength(2048)
  url: string;

  @ApiPropertyOptional({
    type: [String],
    maxItems: 100,
    example: ['trip.delayed'],
    description: 'Event types this endpoint receives; all when absent.',
  })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(100)
  @IsString({ each: true })
  // NOTE: the limit of an event's type (CreateEventDto): a longer entry could never match.
  @MaxLength(200, {
    each: true,
    message:
      'each value in eventTypes must be at most 200 characters, as event types are',
  })
  @Matches(EVENT_TYPE_PATTERN, {
    each: true,
    message: `each value in eventTypes ${EVENT_TYPE_MESSAGE}`,
  })
  eventTypes?: string[];

  @ApiPropertyOptional({ maxLength: 1000 })
  @IsOptional()
  @IsString()
  @MaxLength(1000)
  description?: string;
}
