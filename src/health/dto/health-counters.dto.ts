import { ApiExtraModels, ApiProperty, getSchemaPath } from '@nestjs/swagger';

/** The pending outbox row with the most failed relay attempts. */
export class OutboxRowErrorDto {
  @ApiProperty({ description: 'Bull queue name.' })
  queue: string;

  @ApiProperty({ description: 'The row id (unique to one add).' })
  id: string;

  @ApiProperty({ type: 'integer', description: 'Failed relay attempts.' })
  attempts: number;

  @ApiProperty({ description: 'The error of the last one.' })
  message: string;
}

/** The outbox of the library's durable queues (`OutboxStats`). */
@ApiExtraModels(OutboxRowErrorDto)
export class OutboxCountersDto {
  @ApiProperty({ type: 'integer', description: 'Rows not yet dispatched.' })
  pending: number;

  @ApiProperty({
    type: 'integer',
    description: 'Dispatched rows still kept (until their retention ends).',
  })
  dispatched: number;

  @ApiProperty({
    type: 'number',
    nullable: true,
    description:
      'Age of the oldest pending row (ms); null when none is pending.',
  })
  oldestPendingAgeMs: number | null;

  @ApiProperty({
    type: 'integer',
    description: 'Pending rows with at least one failed relay attempt.',
  })
  failing: number;

  @ApiProperty({
    type: 'integer',
    description: 'Most failed relay attempts of a pending row.',
  })
  maxAttempts: number;

  // NOTE: a $ref with `nullable` beside it is ignored by OpenAPI 3.0: `allOf` carries it.
  @ApiProperty({
    allOf: [{ $ref: getSchemaPath(OutboxRowErrorDto) }],
    nullable: true,
    description:
      'The pending row with the most failed relay attempts; null when none failed.',
  })
  lastError: OutboxRowErrorDto | null;
}

/** The transaction runner's counters since start-up (`TransactionRunnerStats`). */
export class TransactionCountersDto {
  @ApiProperty({ type: 'integer', description: 'Transactions committed.' })
  committed: number;

  @ApiProperty({
    type: 'integer',
    description: 'Transactions rolled back (failed commits included).',
  })
  rolledBack: number;

  @ApiProperty({ type: 'integer', description: 'Savepoints rolled back.' })
  savepointsRolledBack: number;

  @ApiProperty({
    type: 'integer',
    description:
      'After-commit and after-rollback steps that threw or timed out.',
  })
  hookFailures: number;

  @ApiProperty({
    type: 'integer',
    description: 'After-commit phases that went on in the background.',
  })
  hookPhasesDetached: number;
}

/** Bull's job counts of the delivery queue. */
export class DeliveryJobCountsDto {
  @ApiProperty({ type: 'integer' })
  waiting: number;

  @ApiProperty({ type: 'integer' })
  active: number;

  @ApiProperty({ type: 'integer' })
  completed: number;

  @ApiProperty({ type: 'integer' })
  failed: number;

  @ApiProperty({ type: 'integer' })
  delayed: number;

  @ApiProperty({ type: 'integer' })
  paused: number;
}

/** What went wrong around delivery attempts in this process (`DeliveryStats`). */
export class DeliveryCountersDto {
  @ApiProperty({
    type: 'integer',
    description: 'Outcomes stored without the response (Postgres refused it).',
  })
  recordFailures: number;

  @ApiProperty({
    type: 'integer',
    description: 'Outcomes that could not be stored at all.',
  })
  unrecorded: number;

  @ApiProperty({
    type: 'integer',
    description: 'Attempts found in progress after their lease.',
  })
  interrupted: number;

  @ApiProperty({
    type: 'integer',
    description: 'Deliveries failed at the attempt limit.',
  })
  gaveUp: number;

  @ApiProperty({
    type: 'integer',
    description: 'Attempts that failed before a request could be built.',
  })
  prepareFailures: number;
}

/** JSON request bodies of this process (`JsonBodyStats`). */
export class BodyCountersDto {
  @ApiProperty({ type: 'integer', description: 'Bodies read.' })
  read: number;

  @ApiProperty({ type: 'integer', description: 'Bytes read.' })
  bytes: number;

  @ApiProperty({ type: 'integer', description: 'Bodies parsed as JSON.' })
  parsed: number;
}
