import { ApiProperty } from '@nestjs/swagger';
import type { AttemptStatus, AttemptTrigger } from '../delivery-attempt.entity';
import type { DeliveryStatus } from '../delivery.entity';

const DELIVERY_STATUSES: DeliveryStatus[] = [
  'pending',
  'sending',
  'succeeded',
  'failed',
];
const ATTEMPT_TRIGGERS: AttemptTrigger[] = ['scheduled', 'manual'];
const ATTEMPT_STATUSES: AttemptStatus[] = [
  'in_progress',
  'succeeded',
  'failed',
  'interrupted',
];

/** One event to one endpoint (the `deliveries` row). */
export class DeliveryResponseDto {
  @ApiProperty({ format: 'uuid' })
  id: string;

  @ApiProperty({ format: 'uuid' })
  accountId: string;

  @ApiProperty({ format: 'uuid' })
  eventId: string;

  @ApiProperty({ format: 'uuid' })
  endpointId: string;

  @ApiProperty({
    enum: DELIVERY_STATUSES,
    example: 'succeeded',
    description:
      '`succeeded` and `failed` are final (a failed one can be retried).',
  })
  status: DeliveryStatus;

  @ApiProperty({ type: 'integer', minimum: 0, example: 1 })
  attemptCount: number;

  @ApiProperty({
    type: String,
    format: 'date-time',
    nullable: true,
    description: 'When the next scheduled attempt is due; null once final.',
  })
  nextAttemptAt: string | null;

  @ApiProperty({
    type: String,
    format: 'date-time',
    nullable: true,
    description: 'While `sending`: until when the sending worker owns it.',
  })
  lockedUntil: string | null;

  @ApiProperty({
    type: 'integer',
    nullable: true,
    example: 200,
    description: 'HTTP status of the last answer; null if none came.',
  })
  lastStatusCode: number | null;

  @ApiProperty({ type: String, nullable: true })
  lastError: string | null;

  @ApiProperty({ format: 'date-time' })
  createdAt: string;

  @ApiProperty({ format: 'date-time' })
  updatedAt: string;

  @ApiProperty({ type: String, format: 'date-time', nullable: true })
  completedAt: string | null;
}

/** One HTTP exchange with an endpoint (or its failure to happen). */
export class DeliveryAttemptResponseDto {
  @ApiProperty({ format: 'uuid' })
  id: string;

  @ApiProperty({ format: 'uuid' })
  deliveryId: string;

  @ApiProperty({ type: 'integer', minimum: 1, example: 1 })
  number: number;

  @ApiProperty({ enum: ATTEMPT_TRIGGERS, example: 'scheduled' })
  trigger: AttemptTrigger;

  @ApiProperty({
    enum: ATTEMPT_STATUSES,
    example: 'succeeded',
    description: '`interrupted`: the worker died mid-flight.',
  })
  status: AttemptStatus;

  @ApiProperty({ type: 'integer', nullable: true, example: 200 })
  statusCode: number | null;

  @ApiProperty({ type: 'integer', nullable: true, example: 42 })
  durationMs: number | null;

  @ApiProperty({
    type: String,
    nullable: true,
    example: 'http_503',
    description:
      '`http_<status>` for a non-2xx answer, else timeout, dns, connection_refused, tls, …',
  })
  errorClass: string | null;

  @ApiProperty({ type: String, nullable: true })
  errorMessage: string | null;

  @ApiProperty({
    type: String,
    nullable: true,
    description: 'The start of the endpoint\u2019s answer.',
  })
  responseBody: string | null;

  @ApiProperty({ description: 'Whether responseBody was cut.' })
  responseTruncated: boolean;

  @ApiProperty({ type: String, format: 'date-time', nullable: true })
  nextAttemptAt: string | null;

  @ApiProperty({ format: 'date-time' })
  startedAt: string;

  @ApiProperty({ type: String, format: 'date-time', nullable: true })
  finishedAt: string | null;
}

/** A delivery of an event's delivery log, with its latest attempts inline. */
export class DeliveryWithAttemptsResponseDto extends DeliveryResponseDto {
  @ApiProperty({
    type: [DeliveryAttemptResponseDto],
    description:
      'The latest 50 attempts, oldest first; all of them: `GET /v1/deliveries/{id}/attempts`.',
  })
  attempts: DeliveryAttemptResponseDto[];
}

/** Answer of `POST /v1/deliveries/:id/retry`. */
export class DeliveryRetryResponseDto {
  @ApiProperty({ format: 'uuid' })
  deliveryId: string;

  @ApiProperty({
    enum: DELIVERY_STATUSES,
    description: 'The delivery\u2019s status when the attempt was queued.',
  })
  status: DeliveryStatus;

  @ApiProperty({ enum: [true] })
  queued: true;

  @ApiProperty({
    example: '6f1c…:manual:0b7e2c4d-5a1f-4f3e-9c2a-8d6b1e0f7a93',
    description: 'Id of the queued job.',
  })
  jobId: string;
}

/** Answer of `POST /v1/endpoints/:id/recover`. */
export class RecoverResponseDto {
  @ApiProperty({ format: 'uuid' })
  endpointId: string;

  @ApiProperty({ format: 'date-time' })
  since: string;

  @ApiProperty({
    type: 'integer',
    minimum: 0,
    example: 3,
    description: 'Failed deliveries queued again (at most 10000).',
  })
  queued: number;
}
