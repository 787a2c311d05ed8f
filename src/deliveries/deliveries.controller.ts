import { ApiAcceptedResponse, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { ApiErrors, ApiKeyAuth, ApiPage } from '../openapi/api-docs.decorators';
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
import {
  DeliveryAttemptResponseDto,
  DeliveryResponseDto,
  DeliveryRetryResponseDto,
  RecoverResponseDto,
} from './dto/delivery-response.dto';
import { RecoverDto } from './dto/recover.dto';
import { Idempotent } from '../idempotency/idempotent.decorator';

/** The delivery log, manual resend of one delivery, and recovery of an endpoint's failures. */
@ApiTags('deliveries')
@ApiKeyAuth()
@Controller('v1')
export class DeliveriesController {
  constructor(
    private readonly deliveries: DeliveriesService,
    private readonly log: DeliveryLogService,
  ) {}

  @Get('deliveries')
  @ApiPage(DeliveryResponseDto, 'The account\u2019s deliveries, newest first.')
  @ApiErrors(400)
  list(@AccountId() accountId: string, @Query() query: ListDeliveriesQueryDto) {
    return this.log.list(accountId, query);
  }

  @Get('deliveries/:id')
  @ApiOkResponse({ type: DeliveryResponseDto, description: 'The delivery.' })
  @ApiErrors(404)
  get(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.log.get(accountId, id);
  }

  @Get('deliveries/:id/attempts')
  @ApiPage(
    DeliveryAttemptResponseDto,
    'The delivery\u2019s attempts, oldest first.',
  )
  @ApiErrors(404)
  attempts(
    @AccountId() accountId: string,
    @Param('id', UuidParam()) id: string,
    @Query() page: PageQueryDto,
  ) {
    return this.log.attempts(accountId, id, page);
  }

  @Post('deliveries/:id/retry')
  @Idempotent()
  @ApiAcceptedResponse({
    type: DeliveryRetryResponseDto,
    description: 'A new attempt is queued.',
  })
  @ApiErrors(404)
  @HttpCode(202)
  retry(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.deliveries.retry(accountId, id);
  }

  @Post('endpoints/:id/recover')
  @Idempotent()
  @ApiAcceptedResponse({
    type: RecoverResponseDto,
    description:
      'The endpoint\u2019s failed deliveries since `since` are queued again.',
  })
  @ApiErrors(400, 404, 422)
  @HttpCode(202)
  recover(
    @AccountId() accountId: string,
    @Param('id', UuidParam()) id: string,
    @Body() dto: RecoverDto,
  ) {
    return this.deliveries.recover(accountId, id, dto.since);
  }
}
