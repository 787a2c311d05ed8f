import { ApiProperty } from '@nestjs/swagger';

/** Answer of `POST /v1/accounts`. */
export class CreatedAccountDto {
  @ApiProperty({ format: 'uuid' })
  id: string;

  @ApiProperty()
  name: string;

  @ApiProperty({
    description: 'The API key, shown this once (only its hash is stored).',
  })
  apiKey: string;

  @ApiProperty({ format: 'date-time' })
  createdAt: string;
}
