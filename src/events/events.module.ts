import { Module } from '@nestjs/common';
import { DeliveriesModule } from '../deliveries/deliveries.module';
import { EventsController } from './events.controller';
import { EventsService } from './events.service';

/** Events: storage, fan-out to deliveries, and the delivery log. */
@Module({
  imports: [DeliveriesModule],
  controllers: [EventsController],
  providers: [EventsService],
  exports: [EventsService],
})
export class EventsModule {}
