import {
  ApiBody,
  ApiCreatedResponse,
  ApiOkResponse,
  ApiTags,
} from '@nestjs/swagger';
import { ApiErrors, ApiKeyAuth, ApiPage } from '../openapi/api-docs.decorators';
import { ShedUnderLoad } from '../load-shedding/load-shed.guard';
import { CreateEventDto } from './dto/create-event.dto';
import {
  EventResponseDto,
  PublishedEventResponseDto,
} from './dto/event-response.dto';
import { DeliveryWithAttemptsResponseDto } from '../deliveries/dto/delivery-response.dto';
import { Controller, Get, Param, Post, Query, Req } from '@nestjs/common';
import { Transactional } from 'nestjs-transactional-jobs';
import { AccountId } from '../auth/auth.decorators';
import type { JsonRequest } from '../http/json-body.guard';
import { DeliveryLogService } from '../deliveries/delivery-log.service';
import { PageQueryDto } from '../http/pagination';
import { UuidParam } from '../http/uuid-param.pipe';
import { ListEventsQueryDto } from './dto/list-events.dto';
import { readEventInput } from './event-input';
import { EventsService } from './events.service';
import { eventJson } from './stored-event';
import { Idempotent } from '../idempotency/idempotent.decorator';

/** Generic events for producers that are not trips, and the delivery log of any event. */
@ApiTags('events')
@ApiKeyAuth()
@Controller('v1/events')
export class EventsController {
  constructor(
    private readonly events: EventsService,
    private readonly log: DeliveryLogService,
  ) {}

  @Post()
  @Idempotent()
  @ShedUnderLoad()
  @ApiBody({ type: CreateEventDto })
  @ApiCreatedResponse({
    type: PublishedEventResponseDto,
    description: 'The event, with one delivery per matching endpoint.',
  })
  @ApiErrors(400)
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

  @Get()
  @ApiPage(EventResponseDto, 'The account\u2019s events, newest first.')
  @ApiErrors(400)
  list(@AccountId() accountId: string, @Query() query: ListEventsQueryDto) {
    return this.events.list(accountId, query);
  }

  @Get(':id')
  @ApiOkResponse({ type: EventResponseDto, description: 'The event.' })
  @ApiErrors(404)
  async get(
    @AccountId() accountId: string,
    @Param('id', UuidParam()) id: string,
  ) {
    return eventJson(await this.events.get(accountId, id));
  }

  @Get(':id/deliveries')
  @ApiPage(
    DeliveryWithAttemptsResponseDto,
    'The event\u2019s deliveries, oldest first, each with its latest attempts.',
  )
  @ApiErrors(404)
  async deliveries(
    @AccountId() accountId: string,
    @Param('id', UuidParam()) id: string,
    @Query() page: PageQueryDto,
  ) {
    await this.events.get(accountId, id);
    return this.log.ofEvent(accountId, id, page);
  }
}
