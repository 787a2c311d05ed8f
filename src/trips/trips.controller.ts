import { ApiCreatedResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { ApiErrors, ApiKeyAuth } from '../openapi/api-docs.decorators';
import { Body, Controller, Get, HttpCode, Param, Post } from '@nestjs/common';
import { Transactional } from 'nestjs-transactional-jobs';
import { AccountId } from '../auth/auth.decorators';
import { ShedUnderLoad } from '../load-shedding/load-shed.guard';
import { UuidParam } from '../http/uuid-param.pipe';
import { CreateTripDto } from './dto/create-trip.dto';
import { ReportDelayDto } from './dto/report-delay.dto';
import {
  TripDelayedResponseDto,
  TripResponseDto,
} from './dto/trip-response.dto';
import { TripsService } from './trips.service';
import { Idempotent } from '../idempotency/idempotent.decorator';

/** Trips of the caller's account. */
@ApiTags('trips')
@ApiKeyAuth()
@Controller('v1/trips')
export class TripsController {
  constructor(private readonly trips: TripsService) {}

  @Post()
  @Idempotent()
  @ShedUnderLoad()
  @ApiCreatedResponse({ type: TripResponseDto, description: 'The trip.' })
  @ApiErrors(400, 409)
  @Transactional()
  create(@AccountId() accountId: string, @Body() dto: CreateTripDto) {
    return this.trips.create(accountId, dto);
  }

  @Get(':id')
  @ApiOkResponse({ type: TripResponseDto, description: 'The trip.' })
  @ApiErrors(404)
  get(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.trips.get(accountId, id);
  }

  @Post(':id/delays')
  @Idempotent()
  @ShedUnderLoad()
  @ApiCreatedResponse({
    type: TripDelayedResponseDto,
    description:
      'The delay, the updated trip and the `trip.delayed` event, stored in one transaction.',
  })
  @ApiErrors(400, 404)
  @Transactional()
  delay(
    @AccountId() accountId: string,
    @Param('id', UuidParam()) id: string,
    @Body() dto: ReportDelayDto,
  ) {
    return this.trips.reportDelay(accountId, id, dto);
  }

  @Post(':id/arrival')
  @Idempotent()
  @ShedUnderLoad()
  @ApiOkResponse({
    type: TripResponseDto,
    description:
      'The arrived trip (its `trip.arrived` event is stored in the same transaction).',
  })
  @ApiErrors(404, 409)
  @HttpCode(200)
  @Transactional()
  arrive(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.trips.arrive(accountId, id);
  }
}
