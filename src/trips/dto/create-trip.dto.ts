import { IsNotEmpty, IsString, MaxLength } from 'class-validator';
import { IsDateTime } from '../../http/date-time';

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

  @IsDateTime()
  plannedArrival: string;
}
