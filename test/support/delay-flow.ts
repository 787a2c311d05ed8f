import request from 'supertest';
import { createTenant, Tenant, tripBody } from './api';
import { E2eApp, eventually } from './harness';
import { Received, Receiver } from './receiver';

/** What one trip delay went through, with every id and secret it involved. */
export interface DelayFlow {
  tenant: Tenant;
  endpointId: string;
  /** The endpoint's `whsec_` signing secret. */
  secret: string;
  tripId: string;
  eventId: string;
  /** The `X-Request-Id` the delay request was sent with. */
  requestId: string;
  /** The webhook the receiver got for the event. */
  received: Received;
}

/**
 * Account, endpoint (to `receiver`), trip, then `POST /v1/trips/:id/delays` with
 * `X-Request-Id: requestId` (and `headers`); resolves once the receiver got the webhook and
 * the delivery is recorded as succeeded.
 */
export async function runDelayFlow(
  svc: E2eApp,
  receiver: Receiver,
  requestId: string,
  headers: Record<string, string> = {},
): Promise<DelayFlow> {
  const tenant = await createTenant(svc, `obs-${requestId}`);
  const api = () => request(svc.url);
  const endpoint = await api()
    .post('/v1/endpoints')
    .set(tenant.auth)
    .send({ url: receiver.url, eventTypes: ['trip.delayed'] })
    .expect(201);
  const trip = await api()
    .post('/v1/trips')
    .set(tenant.auth)
    .send(tripBody())
    .expect(201);
  const delay = await api()
    .post(`/v1/trips/${trip.body.id}/delays`)
    .set(tenant.auth)
    .set('x-request-id', requestId)
    .set(headers)
    .send({ minutes: 25, reason: 'snow on the pass' })
    .expect(201);
  const eventId: string = delay.body.event.id;
  const received = await eventually(
    () => receiver.received.find((r) => r.headers['webhook-id'] === eventId),
    'the webhook',
  );
  await eventually(async () => {
    const res = await api()
      .get(`/v1/events/${eventId}/deliveries`)
      .set(tenant.auth);
    return res.body.data?.[0]?.status === 'succeeded';
  }, 'the delivery to be recorded');
  return {
    tenant,
    endpointId: endpoint.body.id,
    secret: endpoint.body.secret,
    tripId: trip.body.id,
    eventId,
    requestId,
    received,
  };
}
