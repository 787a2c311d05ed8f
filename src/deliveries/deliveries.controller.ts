import { Body, Controller, HttpCode, Param, Post } from '@nestjs/common';
import { AccountId } from '../auth/auth.decorators';
import { UuidParam } from '../http/uuid-param.pipe';
import { DeliveriesService } from './deliveries.service';
import { RecoverDto } from './dto/recover.dto';

/** Manual resend of one delivery, and recovery of an endpoint's failures. */
@Controller('v1')
export class DeliveriesController {
  constructor(private readonly deliveries: DeliveriesService) {}

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
