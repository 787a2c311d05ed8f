import request from 'supertest';
import { deliveryApi, DeliveryLog } from './support/delivery-api';
import {
  ADMIN_TOKEN,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

/** The harness's retry schedule has four entries. */
const ATTEMPTS = 4;
const TIMEOUT_MS = 1_000;
const LEASE_MS = TIMEOUT_MS + 500;

/**
 * A manual attempt (POST /v1/deliveries/:id/retry) of a delivery that is already final, whose
 * outcome is never recorded (Postgres refused both recordings here; a worker killed mid-send
 * leaves the same rows): the claim made the delivery `sending` with a lease and an attempt
 * `in_progress`. README: "the lease expires and the delivery is sent again, but never more
 * often than the retry schedule has entries". Once the lease has expired, the reconciler
 * enqueues a *scheduled* job for it (`sending` + lease expired), whose claim skips it: it is
 * not due (`next_attempt_at` is NULL for a final delivery). Nothing else ever touches it: the
 * delivery stays `sending` (a succeeded one too), its attempt `in_progress`, forever, and the
 * reconciler re-enqueues it on every round.
 */
describe('adversarial6: a manual attempt of a final delivery whose outcome is never recorded', () => {
  let svc: E2eApp;
  let hook: Receiver;
  const failing = `adv6_refuse_manual_${process.pid}`;

  beforeAll(async () => {
    svc = await startE2eApp({
      deliveryTimeoutMs: TIMEOUT_MS,
      deliveryLeaseMarginMs: LEASE_MS - TIMEOUT_MS,
    });
    // Answers 500 to the endpoint described "fail", 200 otherwise.
    hook = await startReceiver((_n, _r, res) => res.end('ok'));
    // Postgres refuses the outcome of manual attempts to endpoints described "refuse manual".
    await svc.dataSource.query(`
      CREATE OR REPLACE FUNCTION ${failing}() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.trigger = 'manual' AND EXISTS (
          SELECT 1 FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id
          WHERE d.id = NEW.delivery_id AND e.description = 'refuse manual')
        THEN RAISE EXCEPTION 'refused by the test';
        END IF;
        RETURN NEW;
      END $$`);
    await svc.dataSource.query(`
      CREATE TRIGGER ${failing} BEFORE UPDATE ON delivery_attempts FOR EACH ROW
      WHEN (NEW.status IN ('succeeded', 'failed')) EXECUTE FUNCTION ${failing}()`);
  });

  afterAll(async () => {
    await svc?.dataSource.query(
      `DROP TRIGGER IF EXISTS ${failing} ON delivery_attempts`,
    );
    await svc?.dataSource.query(`DROP FUNCTION IF EXISTS ${failing}()`);
    await hook?.close();
    await svc?.close();
  });

  const unrecorded = async (): Promise<number> =>
    (
      await request(svc.url)
        .get('/health')
        .set('authorization', `Bearer ${ADMIN_TOKEN}`)
        .expect(200)
    ).body.deliveries.unrecorded;

  it.each([
    ['failed', 500],
    ['succeeded', 200],
  ])(
    'should not leave a %s delivery sending with an attempt in progress once the lease expired',
    async (final, answer) => {
      const failHook = await startReceiver((_n, _r, res) => {
        res.statusCode = answer;
        res.end('scheduled');
      });
      try {
        const client = deliveryApi(svc, await svc.createAccount());
        const endpoint = await client.createEndpoint(failHook.url);
        const event = await client.publish('trip.delayed', { final });
        const done = await client.deliveryWhen(
          event.id,
          (d) => d.status === final,
          `the delivery to be ${final}`,
        );
        const before = done.attemptCount;
        expect(before).toBe(final === 'failed' ? ATTEMPTS : 1);
        // The manual attempt goes to the shared receiver (200), and its outcome is refused.
        await client
          .api()
          .patch(`/v1/endpoints/${endpoint.id}`)
          .set(client.auth)
          .send({ url: hook.url, description: 'refuse manual' })
          .expect(200);
        const sentBefore = hook.received.length;
        const unrecordedBefore = await unrecorded();
        await client
          .api()
          .post(`/v1/deliveries/${done.id}/retry`)
          .set(client.auth)
          .expect(202);
        await eventually(
          () => hook.received.length === sentBefore + 1,
          'the manual request',
        );
        await eventually(
          async () => (await unrecorded()) === unrecordedBefore + 1,
          'the manual outcome to be given up as unrecorded',
        );
        const stuck = (await client.log(event.id))[0];
        expect(stuck).toMatchObject({ status: 'sending' });
        expect(stuck.attempts.at(-1)).toMatchObject({
          number: before + 1,
          trigger: 'manual',
          status: 'in_progress',
        });
        // Postgres takes outcomes again (a new worker after a kill would be here too).
        await client
          .api()
          .patch(`/v1/endpoints/${endpoint.id}`)
          .set(client.auth)
          .send({ description: 'ok' })
          .expect(200);
        const settled: DeliveryLog = await client.deliveryWhen(
          event.id,
          (d) =>
            d.status !== 'sending' &&
            d.attempts.every((a) => a.status !== 'in_progress'),
          'the delivery to leave `sending` after the lease',
          LEASE_MS + 10_000,
        );
        expect(['failed', 'succeeded']).toContain(settled.status);
        const manual = settled.attempts.find((a) => a.number === before + 1)!;
        expect(manual.trigger).toBe('manual');
        expect(['interrupted', 'succeeded']).toContain(manual.status);
      } finally {
        await failHook.close();
      }
    },
  );
});
