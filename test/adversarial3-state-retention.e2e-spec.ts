/**
 * Adversarial, round 3 (state and concurrency): retention running while deliveries are
 * retrying or have a manual attempt queued, and what the API answers afterwards.
 */
import { RetentionService } from '../src/retention/retention.service';
import { Tenant, createTenant } from './support/api';
import { deliveryApi, holdsFor } from './support/delivery-api';
import { E2eApp, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';
import { failOnProcessCrashes } from './support/process-crashes';

jest.setTimeout(90_000);

describe('adversarial3 state: retention against deliveries in progress', () => {
  failOnProcessCrashes();
  let svc: E2eApp;
  let tenant: Tenant;
  let failing: Receiver;

  beforeAll(async () => {
    // The second attempt comes 2 s after the first: the delivery stays pending in between.
    svc = await startE2eApp({ retryScheduleMs: [0, 2000] });
    failing = await startReceiver((_n, _r, res) => {
      res.statusCode = 503;
      res.end('later');
    });
    tenant = await createTenant(svc, 'adv3-state-retention');
  });

  afterAll(async () => {
    await svc?.close();
    await failing?.close();
  });

  /**
   * Whether the event is still stored. NOTE: retention deletes every expired event of the
   * database, also those other specs aged and left (redteam2-state's, once its abandoned manual
   * attempt is restored), so its counts are checked as "at least", the event itself exactly.
   */
  const stored = async (eventId: string) =>
    (
      await svc.dataSource.query('SELECT 1 FROM events WHERE id = $1', [
        eventId,
      ])
    ).length === 1;

  const age = (eventId: string) =>
    svc.dataSource.query(
      `UPDATE events SET created_at = now() - interval '31 days' WHERE id = $1`,
      [eventId],
    );

  it('should keep an expired event while its delivery is retrying, then delete it once final and answer 404 everywhere', async () => {
    const client = deliveryApi(svc, tenant.apiKey);
    await client.createEndpoint(failing.url, ['adv3.ret.retrying']);
    const event = await client.publish('adv3.ret.retrying', { n: 1 });
    const pending = await client.deliveryWhen(
      event.id,
      (d) => d.status === 'pending' && d.attemptCount === 1,
      'the first attempt to fail, a retry scheduled',
    );
    await age(event.id);
    const retention = svc.app.get(RetentionService);
    await retention.runOnce();
    expect(await stored(event.id)).toBe(true);
    const failed = await client.deliveryWhen(
      event.id,
      (d) => d.status === 'failed' && d.attemptCount === 2,
      'the retry to fail the delivery',
    );
    expect(failed.id).toBe(pending.id);
    expect((await retention.runOnce()).events).toBeGreaterThanOrEqual(1);
    expect(await stored(event.id)).toBe(false);

    const get = (path: string) => client.api().get(path).set(client.auth);
    for (const path of [
      `/v1/events/${event.id}`,
      `/v1/events/${event.id}/deliveries`,
      `/v1/deliveries/${failed.id}`,
      `/v1/deliveries/${failed.id}/attempts`,
    ]) {
      const res = await get(path);
      expect({ path, status: res.status }).toEqual({ path, status: 404 });
    }
    const list = await get('/v1/deliveries').query({ eventId: event.id });
    expect(list.status).toBe(200);
    expect(list.body.data).toEqual([]);
    const retry = await client
      .api()
      .post(`/v1/deliveries/${failed.id}/retry`)
      .set(client.auth);
    expect(retry.status).toBe(404);
  });

  it('should send nothing and crash nothing when a queued manual attempt outlives its event', async () => {
    const client = deliveryApi(svc, tenant.apiKey);
    const endpoint = await client.createEndpoint(failing.url, [
      'adv3.ret.manual',
    ]);
    const event = await client.publish('adv3.ret.manual', { n: 1 });
    const failed = await client.deliveryWhen(
      event.id,
      (d) => d.status === 'failed',
      'the delivery to fail',
      10_000,
    );
    await age(event.id);
    // Stop the worker from taking jobs, queue a manual attempt and a recover, delete the
    // event, then let the worker run them.
    await svc.queue.pause(true);
    try {
      await client
        .api()
        .post(`/v1/deliveries/${failed.id}/retry`)
        .set(client.auth)
        .expect(202);
      await client
        .api()
        .post(`/v1/endpoints/${endpoint.id}/recover`)
        .set(client.auth)
        .send({ since: new Date(Date.now() - 3600_000).toISOString() })
        .expect(202);
      expect(
        (await svc.app.get(RetentionService).runOnce()).events,
      ).toBeGreaterThanOrEqual(1);
      expect(await stored(event.id)).toBe(false);
    } finally {
      await svc.queue.resume(true);
    }
    const before = failing.received.length;
    await holdsFor(
      () => failing.received.length === before,
      1500,
      'no request for a deleted delivery',
    );
    const res = await client
      .api()
      .get(`/v1/deliveries/${failed.id}`)
      .set(client.auth);
    expect(res.status).toBe(404);
  });
});
