import { IsNotEmpty, IsString, MaxLength } from 'class-validator';

/** Body of `POST /v1/accounts`. */
export class CreateAccountDto {
  @IsString()
  @IsNotEmpty()
  @MaxLength(200)
  name: string;
}
