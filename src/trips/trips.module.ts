import { Module } from '@nestjs/common';
import { EventsModule } from '../events/events.module';
import { TripsController } from './trips.controller';
import { TripsService } from './trips.service';

/** Trips and their delays. */
@Module({
  imports: [EventsModule],
  controllers: [TripsController],
  providers: [TripsService],
})
export class TripsModule {}
