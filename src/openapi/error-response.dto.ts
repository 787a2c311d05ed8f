import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';

/** The JSON body of every 4xx and 5xx answer (Nest's HttpException shape). */
export class ErrorResponseDto {
  @ApiProperty({ example: 400, description: 'The HTTP status code again.' })
  statusCode: number;

  @ApiProperty({
    description:
      'What was wrong and what to do about it; validation failures list one message per field.',
    oneOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }],
    example: 'minutes must be at least 1',
  })
  message: string | string[];

  @ApiPropertyOptional({
    example: 'Bad Request',
    description: 'The status text.',
  })
  error?: string;
}
