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
  @IsString()
  @MaxLength(2048)
  url: string;

  @IsOptional()
  @IsArray()
  @ArrayMaxSize(100)
  @IsString({ each: true })
  @Matches(EVENT_TYPE_PATTERN, {
    each: true,
    message: `each value in eventTypes ${EVENT_TYPE_MESSAGE}`,
  })
  eventTypes?: string[];

  @IsOptional()
  @IsString()
  @MaxLength(1000)
  description?: string;
}
