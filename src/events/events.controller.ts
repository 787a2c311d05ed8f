import {
  Body,
  Controller,
  Get,
  Param,
  Post,
  RawBodyRequest,
  Req,
} from '@nestjs/common';
import type { Request } from 'express';
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
  create(
    @AccountId() accountId: string,
    @Body() dto: CreateEventDto,
    @Req() req: RawBodyRequest<Request>,
  ) {
    // NOTE: the validation pipe deletes "__proto__", "constructor" and "prototype" keys, and
    // class-transformer drops keys named like Object methods ("toString"); the payload is
    // the customer's free-form data, so it is forwarded as sent.
    const { payload } = JSON.parse(req.rawBody!.toString('utf8'));
    return this.events.publish(accountId, dto.type, payload);
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
