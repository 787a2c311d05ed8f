import { Body, Controller, Get, Param, Post } from '@nestjs/common';
import { Transactional } from '@app/transactional';
import { AccountId } from '../auth/auth.decorators';
import { UuidParam } from '../http/uuid-param.pipe';
import { CreateEventDto } from './dto/create-event.dto';
import { EventsService } from './events.service';

/** Generic events for producers that are not trips, and the delivery log of any event. */
@Controller('v1/events')
export class EventsController {
  constructor(private readonly events: EventsService) {}

  @Post()
  @Transactional()
  create(@AccountId() accountId: string, @Body() dto: CreateEventDto) {
    return this.events.publish(accountId, dto.type, dto.payload);
  }

  @Get(':id')
  get(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.events.get(accountId, id);
  }

  @Get(':id/deliveries')
  deliveries(
    @AccountId() accountId: string,
    @Param('id', UuidParam()) id: string,
  ) {
    return this.events.deliveries(accountId, id);
  }
}
