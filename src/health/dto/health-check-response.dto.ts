import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import type { SchemaObject } from '@nestjs/swagger/dist/interfaces/open-api-spec.interface';

/** Each check by name: `up` or `down`; with the admin token also its details (free-form). */
const CHECKS = {
  type: 'object' as const,
  additionalProperties: {
    type: 'object',
    required: ['status'],
    properties: { status: { type: 'string', enum: ['up', 'down'] } },
    additionalProperties: true,
  } satisfies SchemaObject,
  example: { database: { status: 'up' } },
};

/** Answer of `GET /health/live` and `GET /health/ready` (a terminus health check result). */
export class HealthCheckResponseDto {
  @ApiProperty({ enum: ['ok', 'error', 'shutting_down'], example: 'ok' })
  status: 'ok' | 'error' | 'shutting_down';

  @ApiPropertyOptional({ ...CHECKS, description: 'The checks that are up.' })
  info?: Record<string, { status: string }>;

  @ApiPropertyOptional({ ...CHECKS, description: 'The checks that are down.' })
  error?: Record<string, { status: string }>;

  @ApiProperty({ ...CHECKS, description: 'Every check.' })
  details: Record<string, { status: string }>;
}
