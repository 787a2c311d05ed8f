import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';

const UP_DOWN = ['up', 'down'];

/**
 * NOTE: the admin-only members are operator diagnostics whose counters come from the
 * transactional-jobs library, Bull and the worker, and grow with them: they are documented as
 * free-form objects on purpose; the public summary is exact.
 */
const DIAGNOSTICS = { type: 'object', additionalProperties: true } as const;

/** Answer of `GET /health`: the summary anyone sees, the counters for the admin token. */
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
    ...DIAGNOSTICS,
    nullable: true,
    description:
      'Admin token only: the outbox backlog (null while Postgres is down).',
  })
  outbox?: Record<string, unknown> | null;

  @ApiPropertyOptional({
    ...DIAGNOSTICS,
    description: 'Admin token only: transaction counters.',
  })
  transactions?: Record<string, unknown>;

  @ApiPropertyOptional({
    ...DIAGNOSTICS,
    nullable: true,
    description:
      'Admin token only: Bull job counts of the delivery queue (null while Redis is down).',
  })
  deliveryJobs?: Record<string, unknown> | null;

  @ApiPropertyOptional({
    ...DIAGNOSTICS,
    description: 'Admin token only: delivery counters of this process.',
  })
  deliveries?: Record<string, unknown>;

  @ApiPropertyOptional({
    ...DIAGNOSTICS,
    description: 'Admin token only: JSON request bodies read and parsed.',
  })
  bodies?: Record<string, unknown>;
}
