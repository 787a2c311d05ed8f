import { ApiProperty } from '@nestjs/swagger';
import { IsObject, IsString, Matches, MaxLength } from 'class-validator';
import { EVENT_TYPE_MESSAGE, EVENT_TYPE_PATTERN } from '../event-type';

/** Body of `POST /v1/events`. */
export class CreateEventDto {
  @ApiProperty({ maxLength: 200, example: 'parcel.scanned' })
  @IsString()
  @MaxLength(200)
  @Matches(EVENT_TYPE_PATTERN, { message: `type ${EVENT_TYPE_MESSAGE}` })
  type: string;

  @ApiProperty({
    type: 'object',
    additionalProperties: true,
    description: 'Sent to the endpoints byte for byte as received.',
  })
  @IsObject()
  payload: Record<string, unknown>;
}
