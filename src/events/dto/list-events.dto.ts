import { ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsUUID, Matches } from 'class-validator';
import { IsDateTime } from '../../http/date-time';
import { PageQueryDto } from '../../http/pagination';
import { EVENT_TYPE_MESSAGE, EVENT_TYPE_PATTERN } from '../event-type';

/** Query of `GET /v1/events`: a page, newest first, optionally filtered. */
export class ListEventsQueryDto extends PageQueryDto {
  /** Only events of this type. */
  @ApiPropertyOptional({ description: 'Only events of this type.' })
  @IsOptional()
  @Matches(EVENT_TYPE_PATTERN, { message: `type ${EVENT_TYPE_MESSAGE}` })
  type?: string;

  /** Only events of this trip. */
  @ApiPropertyOptional({
    format: 'uuid',
    description: 'Only events of this trip.',
  })
  @IsOptional()
  @IsUUID('all', { message: 'tripId must be a UUID' })
  tripId?: string;

  /** Only events created at or after this time. */
  @ApiPropertyOptional({
    format: 'date-time',
    description: 'Only events created at or after this time.',
  })
  @IsOptional()
  @IsDateTime()
  since?: string;

  /** Only events created before this time. */
  @ApiPropertyOptional({
    format: 'date-time',
    description: 'Only events created before this time.',
  })
  @IsOptional()
  @IsDateTime()
  until?: string;
}
