import {
  Body,
  Controller,
  Get,
  HttpCode,
  Param,
  Post,
  Query,
} from '@nestjs/common';
import { AccountId } from '../auth/auth.decorators';
import { UuidParam } from '../http/uuid-param.pipe';
import { PageQueryDto } from '../http/pagination';
import { DeliveriesService } from './deliveries.service';
import { DeliveryLogService } from './delivery-log.service';
import { ListDeliveriesQueryDto } from './dto/list-deliveries.dto';
import { RecoverDto } from './dto/recover.dto';

/** The delivery log, manual resend of one delivery, and recovery of an endpoint's failures. */
@Controller('v1')
export class DeliveriesController {
  constructor(
    private readonly deliveries: DeliveriesService,
    private readonly log: DeliveryLogService,
  ) {}

  @Get('deliveries')
  list(@AccountId() accountId: string, @Query() query: ListDeliveriesQueryDto) {
    return this.log.list(accountId, query);
  }

  @Get('deliveries/:id')
  get(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.log.get(accountId, id);
  }

  @Get('deliveries/:id/attempts')
  attempts(
    @AccountId() accountId: string,
    @Param('id', UuidParam()) id: string,
    @Query() page: PageQueryDto,
  ) {
    return this.log.attempts(accountId, id, page);
  }

  @Post('deliveries/:id/retry')
  @HttpCode(202)
  retry(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.deliveries.retry(accountId, id);
  }

  @Post('endpoints/:id/recover')
  @HttpCode(202)
  recover(
    @AccountId() accountId: string,
    @Param('id', UuidParam()) id: string,
    @Body() dto: RecoverDto,
  ) {
    return this.deliveries.recover(accountId, id, dto.since);
  }
}
