import {
  ApiExtraModels,
  ApiProperty,
  ApiPropertyOptional,
  getSchemaPath,
} from '@nestjs/swagger';
import {
  BodyCountersDto,
  DeliveryCountersDto,
  DeliveryJobCountsDto,
  OutboxCountersDto,
  TransactionCountersDto,
} from './health-counters.dto';

const UP_DOWN = ['up', 'down'];

/**
 * Answer of `GET /health`: the summary anyone sees, the counters for the admin token. (A
 * nullable member refers to its DTO through `allOf`: OpenAPI 3.0 ignores `nullable` beside a
 * `$ref`.)
 */
@ApiExtraModels(OutboxCountersDto, DeliveryJobCountsDto)
export class HealthSummaryResponseDto {
  @ApiProperty({
    enum: ['ok', 'degraded'],
    description: '`ok` when Postgres and Redis are both up.',
  })
  status: 'ok' | 'degraded';

  @ApiProperty({ enum: UP_DOWN })
  database: 'up' | 'down';

  @ApiProperty({ enum: UP_DOWN })
  redis: 'up' | 'down';

  @ApiPropertyOptional({
    allOf: [{ $ref: getSchemaPath(OutboxCountersDto) }],
    nullable: true,
    description:
      'Admin token only: the outbox backlog (null while Postgres is down).',
  })
  outbox?: OutboxCountersDto | null;

  @ApiPropertyOptional({
    type: TransactionCountersDto,
    description: 'Admin token only: transaction counters.',
  })
  transactions?: TransactionCountersDto;

  @ApiPropertyOptional({
    allOf: [{ $ref: getSchemaPath(DeliveryJobCountsDto) }],
    nullable: true,
    description:
      'Admin token only: Bull job counts of the delivery queue (null while Redis is down).',
  })
  deliveryJobs?: DeliveryJobCountsDto | null;

  @ApiPropertyOptional({
    type: DeliveryCountersDto,
    description: 'Admin token only: delivery counters of this process.',
  })
  deliveries?: DeliveryCountersDto;

  @ApiPropertyOptional({
    type: BodyCountersDto,
    description: 'Admin token only: JSON request bodies read and parsed.',
  })
  bodies?: BodyCountersDto;
}
