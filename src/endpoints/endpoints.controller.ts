import {
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiOkResponse,
  ApiTags,
} from '@nestjs/swagger';
import { ApiErrors, ApiKeyAuth, ApiPage } from '../openapi/api-docs.decorators';
import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  Param,
  Patch,
  Post,
  Query,
} from '@nestjs/common';
import { Transactional } from 'nestjs-transactional-jobs';
import { AccountId } from '../auth/auth.decorators';
import { PageQueryDto } from '../http/pagination';
import { UuidParam } from '../http/uuid-param.pipe';
import { CreateEndpointDto } from './dto/create-endpoint.dto';
import { UpdateEndpointDto } from './dto/update-endpoint.dto';
import {
  EndpointResponseDto,
  EndpointSecretResponseDto,
  EndpointWithSecretResponseDto,
} from './dto/endpoint-response.dto';
import { EndpointsService } from './endpoints.service';
import { Idempotent } from '../idempotency/idempotent.decorator';
import { WebhookUrlPipe } from './webhook-url.pipe';

/** Webhook endpoints of the caller's account. */
@ApiTags('endpoints')
@ApiKeyAuth()
@Controller('v1/endpoints')
export class EndpointsController {
  constructor(private readonly endpoints: EndpointsService) {}

  @Post()
  @Idempotent()
  @ApiCreatedResponse({
    type: EndpointWithSecretResponseDto,
    description: 'The endpoint, with its signing secret.',
  })
  @ApiErrors(400, 422)
  @Transactional()
  create(
    @AccountId() accountId: string,
    // NOTE: the host is resolved here, before the transaction opens (webhook-url.pipe.ts).
    @Body(WebhookUrlPipe) dto: CreateEndpointDto,
  ) {
    return this.endpoints.create(accountId, dto);
  }

  @Get()
  @ApiPage(EndpointResponseDto, 'The account\u2019s endpoints, oldest first.')
  @ApiErrors(400)
  list(@AccountId() accountId: string, @Query() page: PageQueryDto) {
    return this.endpoints.list(accountId, page);
  }

  @Get(':id')
  @ApiOkResponse({ type: EndpointResponseDto, description: 'The endpoint.' })
  @ApiErrors(400, 404)
  get(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.endpoints.get(accountId, id);
  }

  @Get(':id/secret')
  @ApiOkResponse({
    type: EndpointSecretResponseDto,
    description: 'The current signing secret.',
  })
  @ApiErrors(404)
  secret(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.endpoints.secret(accountId, id);
  }

  @Patch(':id')
  @ApiOkResponse({
    type: EndpointResponseDto,
    description: 'The updated endpoint.',
  })
  @ApiErrors(400, 404)
  @Transactional()
  update(
    @AccountId() accountId: string,
    @Param('id', UuidParam()) id: string,
    @Body(WebhookUrlPipe) dto: UpdateEndpointDto,
  ) {
    return this.endpoints.update(accountId, id, dto);
  }

  @Delete(':id')
  @ApiNoContentResponse({
    description: 'Deleted, with its pending deliveries.',
  })
  @ApiErrors(404)
  @HttpCode(204)
  @Transactional()
  remove(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.endpoints.remove(accountId, id);
  }

  @Post(':id/rotate-secret')
  @Idempotent()
  @ApiCreatedResponse({
    type: EndpointSecretResponseDto,
    description: 'The new secret; the old one signs too for 24 h.',
  })
  // 409: 50 rotated-out secrets still sign (the message says when the next rotation is possible).
  @ApiErrors(404, 409)
  @Transactional()
  rotate(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.endpoints.rotateSecret(accountId, id);
  }

  @Post(':id/enable')
  @Idempotent()
  @ApiOkResponse({
    type: EndpointResponseDto,
    description: 'The endpoint, enabled again.',
  })
  @ApiErrors(404)
  @HttpCode(200)
  @Transactional()
  enable(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.endpoints.enable(accountId, id);
  }
}
