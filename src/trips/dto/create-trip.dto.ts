import { IsDateString, IsNotEmpty, IsString, MaxLength } from 'class-validator';

/** Body of `POST /v1/trips`. */
export class CreateTripDto {
  @IsString()
  @IsNotEmpty()
  @MaxLength(200)
  reference: string;

  @IsString()
  @IsNotEmpty()
  @MaxLength(200)
  origin: string;

  @IsString()
  @IsNotEmpty()
  @MaxLength(200)
  destination: string;

  @IsDateString(
    { strict: true },
    { message: 'plannedArrival must be an ISO 8601 date-time' },
  )
  plannedArrival: string;
}
