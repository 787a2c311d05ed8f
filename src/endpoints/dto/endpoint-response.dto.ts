import { ApiProperty } from '@nestjs/swagger';

/** A webhook endpoint, as `EndpointsService` presents it (never with its secrets). */
export class EndpointResponseDto {
  @ApiProperty({ format: 'uuid' })
  id: string;

  @ApiProperty({ format: 'uri', example: 'https://example.com/webhooks' })
  url: string;

  @ApiProperty({ example: '', description: 'Empty when none was given.' })
  description: string;

  @ApiProperty({
    type: [String],
    nullable: true,
    example: ['trip.delayed'],
    description: 'Event types delivered here; null means every type.',
  })
  eventTypes: string[] | null;

  @ApiProperty({
    description: 'Disabled endpoints get no new deliveries (see `enable`).',
  })
  disabled: boolean;

  @ApiProperty({
    type: String,
    nullable: true,
    description: 'Why the endpoint was disabled; null while enabled.',
  })
  disabledReason: string | null;

  @ApiProperty({ format: 'date-time' })
  createdAt: string;

  @ApiProperty({ format: 'date-time' })
  updatedAt: string;
}

const SECRET = {
  pattern: '^whsec_',
  example: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  description: 'The current Standard Webhooks signing secret.',
};

/** Answer of `POST /v1/endpoints`: the endpoint and its signing secret. */
export class EndpointWithSecretResponseDto extends EndpointResponseDto {
  @ApiProperty(SECRET)
  secret: string;
}

/** Answer of `GET /v1/endpoints/:id/secret` and `POST /v1/endpoints/:id/rotate-secret`. */
export class EndpointSecretResponseDto {
  @ApiProperty(SECRET)
  secret: string;
}
