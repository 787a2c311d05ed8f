import { ApiProperty } from '@nestjs/swagger';
import { IsNotEmpty, IsString, MaxLength } from 'class-validator';

/** Body of `POST /v1/accounts`. */
export class CreateAccountDto {
  @ApiProperty({ maxLength: 200, example: 'Acme Logistics' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(200)
  name: string;
}
