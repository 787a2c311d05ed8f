import { Module } from '@nestjs/common';
import { AccountsController } from './accounts.controller';

/** Account creation. */
@Module({ controllers: [AccountsController] })
export class AccountsModule {}
