import { ApiBearerAuth, ApiCreatedResponse, ApiTags } from '@nestjs/swagger';
import { ADMIN_TOKEN_SCHEME, ApiErrors } from '../openapi/api-docs.decorators';
import { CreatedAccountDto } from './dto/created-account.dto';
import { Body, Controller, Post } from '@nestjs/common';
import { TransactionHost, Transactional } from 'nestjs-transactional-jobs';
import { generateApiKey, hashApiKey } from '../auth/api-key';
import { AdminRoute } from '../auth/auth.decorators';
import { Account } from './account.entity';
import { CreateAccountDto } from './dto/create-account.dto';
import { Idempotent } from '../idempotency/idempotent.decorator';

/** Account creation (admin token); the API key is returned once and stored hashed. */
@ApiTags('accounts')
@ApiBearerAuth(ADMIN_TOKEN_SCHEME)
@Controller('v1/accounts')
export class AccountsController {
  constructor(private readonly tx: TransactionHost) {}

  @Post()
  @Idempotent()
  @ApiCreatedResponse({
    type: CreatedAccountDto,
    description: 'The account, with its API key (shown this once).',
  })
  @ApiErrors(400, 401)
  @AdminRoute()
  @Transactional()
  async create(@Body() dto: CreateAccountDto) {
    const apiKey = generateApiKey();
    const account = await this.tx.getRepository(Account).save({
      name: dto.name,
      apiKeyHash: hashApiKey(apiKey),
      apiKeyPrefix: apiKey.slice(0, 8),
    });
    return {
      id: account.id,
      name: account.name,
      apiKey,
      createdAt: account.createdAt,
    };
  }
}
