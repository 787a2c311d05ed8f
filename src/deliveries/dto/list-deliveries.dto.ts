import { IsIn, IsOptional, IsUUID } from 'class-validator';
import { PageQueryDto } from '../../http/pagination';
import type { DeliveryStatus } from '../delivery.entity';

const STATUSES: DeliveryStatus[] = [
  'pending',
  'sending',
  'succeeded',
  'failed',
];

/** Query of `GET /v1/deliveries`: a page, newest first, optionally filtered. */
export class ListDeliveriesQueryDto extends PageQueryDto {
  @IsOptional()
  @IsIn(STATUSES, { message: `status must be one of ${STATUSES.join(', ')}` })
  status?: DeliveryStatus;

  @IsOptional()
  @IsUUID('all', { message: 'endpointId must be a UUID' })
  endpointId?: string;

  @IsOptional()
  @IsUUID('all', { message: 'eventId must be a UUID' })
  eventId?: string;
}
