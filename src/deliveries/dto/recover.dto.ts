import { ApiProperty } from '@nestjs/swagger';
import { IsDateTime } from '../../http/date-time';

/** Body of `POST /v1/endpoints/:id/recover`. */
export class RecoverDto {
  @ApiProperty({
    format: 'date-time',
    description:
      'Re-send the failed deliveries of the endpoint created since this time.',
  })
  @IsDateTime()
  since: string;
}
