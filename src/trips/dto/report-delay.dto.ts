import { ApiProperty } from '@nestjs/swagger';
import {
  IsInt,
  IsNotEmpty,
  IsString,
  Max,
  MaxLength,
  Min,
} from 'class-validator';

/** Longest single delay accepted: 30 days. */
export const MAX_DELAY_MINUTES = 30 * 24 * 60;

/** Body of `POST /v1/trips/:id/delays`. */
export class ReportDelayDto {
  @ApiProperty({ minimum: 1, maximum: MAX_DELAY_MINUTES, example: 45 })
  @IsInt({ message: 'minutes must be a whole number of minutes' })
  @Min(1, { message: 'minutes must be at least 1' })
  @Max(MAX_DELAY_MINUTES, {
    message: `minutes must be at most ${MAX_DELAY_MINUTES} (30 days)`,
  })
  minutes: number;

  @ApiProperty({ maxLength: 500, example: 'Traffic jam on the A43' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(500)
  reason: string;
}
