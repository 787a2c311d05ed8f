import { IsDateTime } from '../../http/date-time';

/** Body of `POST /v1/endpoints/:id/recover`. */
export class RecoverDto {
  @IsDateTime()
  since: string;
}
