import { Body, Controller, Get, HttpCode, Param, Post } from '@nestjs/common';
import { Transactional } from 'nestjs-transactional-jobs';
import { AccountId } from '../auth/auth.decorators';
import { UuidParam } from '../http/uuid-param.pipe';
import { CreateTripDto } from './dto/create-trip.dto';
import { ReportDelayDto } from './dto/report-delay.dto';
import { TripsService } from './trips.service';

/** Trips of the caller's account. */
@Controller('v1/trips')
export class TripsController {
  constructor(private readonly trips: TripsService) {}

  @Post()
  @Transactional()
  create(@AccountId() accountId: string, @Body() dto: CreateTripDto) {
    return this.trips.create(accountId, dto);
  }

  @Get(':id')
  get(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.trips.get(accountId, id);
  }

  @Post(':id/delays')
  @Transactional()
  delay(
    @AccountId() accountId: string,
    @Param('id', UuidParam()) id: string,
    @Body() dto: ReportDelayDto,
  ) {
    return this.trips.reportDelay(accountId, id, dto);
  }

  @Post(':id/arrival')
  @HttpCode(200)
  @Transactional()
  arrive(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.trips.arrive(accountId, id);
  }
}
