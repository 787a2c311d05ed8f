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
import { EndpointsService } from './endpoints.service';

/** Webhook endpoints of the caller's account. */
@Controller('v1/endpoints')
export class EndpointsController {
  constructor(private readonly endpoints: EndpointsService) {}

  @Post()
  @Transactional()
  create(@AccountId() accountId: string, @Body() dto: CreateEndpointDto) {
    return this.endpoints.create(accountId, dto);
  }

  @Get()
  list(@AccountId() accountId: string, @Query() page: PageQueryDto) {
    return this.endpoints.list(accountId, page);
  }

  @Get(':id')
  get(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.endpoints.get(accountId, id);
  }

  @Get(':id/secret')
  secret(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.endpoints.secret(accountId, id);
  }

  @Patch(':id')
  @Transactional()
  update(
    @AccountId() accountId: string,
    @Param('id', UuidParam()) id: string,
    @Body() dto: UpdateEndpointDto,
  ) {
    return this.endpoints.update(accountId, id, dto);
  }

  @Delete(':id')
  @HttpCode(204)
  @Transactional()
  remove(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.endpoints.remove(accountId, id);
  }

  @Post(':id/rotate-secret')
  @Transactional()
  rotate(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.endpoints.rotateSecret(accountId, id);
  }

  @Post(':id/enable')
  @HttpCode(200)
  @Transactional()
  enable(@AccountId() accountId: string, @Param('id', UuidParam()) id: string) {
    return this.endpoints.enable(accountId, id);
  }
}
