import { Controller, Get, Param, Post, Req } from '@nestjs/common';
import { Transactional } from '@app/transactional';
import { AccountId } from '../auth/auth.decorators';
import type { JsonRequest } from '../http/json-body.guard';
import { UuidParam } from '../http/uuid-param.pipe';
import { readEventInput } from './event-input';
import { EventsService } from './events.service';
import { eventJson } from './stored-event';

/** Generic events for producers that are not trips, and the delivery log of any event. */
@Controller('v1/events')
export class EventsController {
  constructor(private readonly events: EventsService) {}

  @Post()
  @Transactional()
  async create(@AccountId() accountId: string, @Req() req: JsonRequest) {
    const input = await readEventInput(req);
    const event = await this.events.publish(
      accountId,
      input.type,
      input.payloadText,
    );
    return eventJson(event, { deliveries: event.deliveries });
  }

  @Get(':id')
  async get(
    @AccountId() accountId: string,
    @Param('id', UuidParam()) id: string,
  ) {
    return eventJson(await this.events.get(accountId, id));
  }

  @Get(':id/deliveries')
  deliveries(
    @AccountId() accountId: string,
    @Param('id', UuidParam()) id: string,
  ) {
    return this.events.deliveries(accountId, id);
  }
}
