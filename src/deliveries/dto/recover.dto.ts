import { IsDateString } from 'class-validator';

/** Body of `POST /v1/endpoints/:id/recover`. */
export class RecoverDto {
  @IsDateString(
    { strict: true },
    { message: 'since must be an ISO 8601 date-time' },
  )
  since: string;
}
