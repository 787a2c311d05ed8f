import { ApiProperty } from '@nestjs/swagger';

/** An event, with its payload exactly as it was accepted. */
export class EventResponseDto {
  @ApiProperty({
    format: 'uuid',
    description: 'Also the `webhook-id` of its deliveries.',
  })
  id: string;

  @ApiProperty({ example: 'trip.delayed' })
  type: string;

  @ApiProperty({
    type: 'object',
    additionalProperties: true,
    description:
      'The producer\u2019s free-form JSON object, byte for byte as it was accepted.',
  })
  payload: Record<string, unknown>;

  @ApiProperty({ format: 'date-time' })
  createdAt: string;
}

/** An event just stored, with the number of deliveries it was fanned out to. */
export class PublishedEventResponseDto extends EventResponseDto {
  @ApiProperty({
    type: 'integer',
    minimum: 0,
    example: 1,
    description:
      'Deliveries created: one per enabled endpoint subscribed to the type.',
  })
  deliveries: number;
}
