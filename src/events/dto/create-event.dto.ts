import { IsObject, IsString, Matches, MaxLength } from 'class-validator';
import { EVENT_TYPE_MESSAGE, EVENT_TYPE_PATTERN } from '../event-type';

/** Body of `POST /v1/events`. */
export class CreateEventDto {
  @IsString()
  @MaxLength(200)
  @Matches(EVENT_TYPE_PATTERN, { message: `type ${EVENT_TYPE_MESSAGE}` })
  type: string;

  @IsObject()
  payload: Record<string, unknown>;
}
