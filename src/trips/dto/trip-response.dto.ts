import { ApiProperty } from '@nestjs/swagger';
import { PublishedEventResponseDto } from '../../events/dto/event-response.dto';
import type { TripStatus } from '../trip.entity';

const TRIP_STATUSES: TripStatus[] = ['scheduled', 'delayed', 'arrived'];

/** A trip, as `TripsService` presents it. */
export class TripResponseDto {
  @ApiProperty({ format: 'uuid' })
  id: string;

  @ApiProperty({ example: 'T-2026-0042' })
  reference: string;

  @ApiProperty({ example: 'Lyon' })
  origin: string;

  @ApiProperty({ example: 'Turin' })
  destination: string;

  @ApiProperty({ enum: TRIP_STATUSES, example: 'scheduled' })
  status: TripStatus;

  @ApiProperty({ format: 'date-time' })
  plannedArrival: string;

  @ApiProperty({
    format: 'date-time',
    description: 'plannedArrival plus every delay reported so far.',
  })
  expectedArrival: string;

  @ApiProperty({ type: 'integer', minimum: 0, example: 25 })
  delayMinutesTotal: number;

  @ApiProperty({ format: 'date-time' })
  createdAt: string;

  @ApiProperty({ format: 'date-time' })
  updatedAt: string;
}

/** One reported delay of a trip, as stored. */
export class TripDelayResponseDto {
  @ApiProperty({ format: 'uuid' })
  id: string;

  @ApiProperty({ format: 'uuid' })
  tripId: string;

  @ApiProperty({ type: 'integer', minimum: 1, example: 25 })
  minutes: number;

  @ApiProperty({ example: 'snow on the pass' })
  reason: string;

  @ApiProperty({ format: 'date-time' })
  createdAt: string;
}

/** Answer of `POST /v1/trips/:id/delays`: what the one transaction stored. */
export class TripDelayedResponseDto {
  @ApiProperty({ type: TripResponseDto, description: 'The updated trip.' })
  trip: TripResponseDto;

  @ApiProperty({ type: TripDelayResponseDto })
  delay: TripDelayResponseDto;

  @ApiProperty({
    type: PublishedEventResponseDto,
    description: 'The `trip.delayed` event.',
  })
  event: PublishedEventResponseDto;
}
