import { ApiProperty } from '@nestjs/swagger';
import { IsNotEmpty, IsString, MaxLength } from 'class-validator';
import { IsDateTime } from '../../http/date-time';

/** Body of `POST /v1/trips`. */
export class CreateTripDto {
  @ApiProperty({ maxLength: 200, example: 'T-2026-0042' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(200)
  reference: string;

  @ApiProperty({ maxLength: 200, example: 'Lyon' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(200)
  origin: string;

  @ApiProperty({ maxLength: 200, example: 'Turin' })
  @IsString()
  @IsNotEmpty()
  @MaxLength(200)
  destination: string;

  @ApiProperty({ format: 'date-time', example: '2026-12-01T10:00:00Z' })
  @IsDateTime()
  plannedArrival: string;
}
