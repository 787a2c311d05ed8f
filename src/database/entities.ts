import { Account } from '../accounts/account.entity';
import { DeliveryAttempt } from '../deliveries/delivery-attempt.entity';
import { Delivery } from '../deliveries/delivery.entity';
import { Endpoint } from '../endpoints/endpoint.entity';
import { WebhookEvent } from '../events/event.entity';
import { IdempotencyKey } from '../idempotency/idempotency-key.entity';
import { TripDelay } from '../trips/trip-delay.entity';
import { Trip } from '../trips/trip.entity';

/** Every entity of the service (the CLI data source needs the list; Nest uses it too). */
export const ENTITIES = [
  Account,
  Endpoint,
  Trip,
  TripDelay,
  WebhookEvent,
  Delivery,
  DeliveryAttempt,
  IdempotencyKey,
];
