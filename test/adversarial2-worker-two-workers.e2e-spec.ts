/**
 * Adversarial (worker): two service processes (API + worker each) on one Postgres and one
 * Redis, a burst of events to one endpoint limited to 2 requests at once, a third of them
 * answered 500 the first time, then a volley of concurrent manual retries. What the receiver
 * saw and what the API's attempt log says must match one for one: every request logged once
 * (same order, same status), attempt numbers contiguous, every signature verifiable with the
 * endpoint's secret, never more than 2 requests in flight, no unhandled rejection.
 */
import request from 'supertest';
import { Webhook } from 'standardwebhooks';
import { deliveryApi, DeliveryLog, holdsFor } from './support/delivery-api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';
import { failOnProcessCrashes } from './support/process-crashes';

jest.setTimeout(90_000);

const LIMIT = 2;
const EVENTS = 30;

describe('adversarial2 worker: two workers, one endpoint limited to 2', () => {
  failOnProcessCrashes();
  let first: E2eApp;
  let second: E2eApp;
  let hook: Receiver;
  let inFlight = 0;
  let maxInFlight = 0;
  /** Per event id, the statuses answered, in order. */
  const answered = new Map<string, number[]>();

  beforeAll(async () => {
    const config = { perEndpointConcurrency: LIMIT, workerConcurrency: 8 };
    first = await startE2eApp(config);
    second = await startE2eApp(config);
    hook = await startReceiver((_n, got, res) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const id = String(got.headers['webhook-id']);
      const seen = answered.get(id) ?? [];
      const payload = JSON.parse(got.body).data as { i: number };
      const status = seen.length === 0 && payload.i % 3 === 0 ? 500 : 200;
      seen.push(status);
      answered.set(id, seen);
      setTimeout(
        () => {
          inFlight--;
          res.statusCode = status;
          res.end(String(status));
        },
        20 + Math.floor(Math.random() * 80),
      );
    });
  });

  afterAll(async () => {
    await hook?.close();
    await second?.close();
    await first?.close();
  });

  function expectLogMatches(delivery: DeliveryLog, statuses: number[]) {
    const attempts = [...delivery.attempts].sort((a, b) => a.number - b.number);
    expect(attempts.map((a) => a.number)).toEqual(
      statuses.map((_s, n) => n + 1),
    );
    expect(attempts.map((a) => a.statusCode)).toEqual(statuses);
    expect(delivery.attemptCount).toBe(statuses.length);
  }

  it('should log every request once, in order, and keep the limit', async () => {
    const client = deliveryApi(first, await first.createAccount('adv2-two'));
    const endpoint = await client.createEndpoint(hook.url, ['adv2.two']);
    // Half the events through each process's API.
    const viaSecond = deliveryApi(second, client.auth.authorization.slice(7));
    const events = await Promise.all(
      Array.from({ length: EVENTS }, (_, i) =>
        (i % 2 ? viaSecond : client).publish('adv2.two', { i }),
      ),
    );
    const logs = await eventually(
      async () => {
        const all = await Promise.all(events.map((e) => client.log(e.id)));
        return (
          all.every(([d]) => d?.status === 'succeeded') && all.map(([d]) => d)
        );
      },
      'every delivery to succeed',
      30_000,
    );
    events.forEach((event, i) => {
      const statuses = answered.get(event.id)!;
      expect(statuses).toEqual(i % 3 === 0 ? [500, 200] : [200]);
      expectLogMatches(logs[i], statuses);
    });
    for (const got of hook.received) {
      expect(() =>
        new Webhook(endpoint.secret).verify(
          got.body,
          got.headers as Record<string, string>,
        ),
      ).not.toThrow();
    }
    expect(maxInFlight).toBeLessThanOrEqual(LIMIT);
    expect(hook.received).toHaveLength(EVENTS + EVENTS / 3);

    // Six manual retries of one delivery at once, through both APIs: six more attempts.
    const target = logs[1];
    const calls = await Promise.all(
      Array.from({ length: 6 }, (_, n) =>
        request((n % 2 ? second : first).url)
          .post(`/v1/deliveries/${target.id}/retry`)
          .set(client.auth),
      ),
    );
    expect(calls.map((c) => c.status)).toEqual(calls.map(() => 202));
    const after = await eventually(
      async () => {
        const [d] = await client.log(events[1].id);
        return (
          d.attempts.length === 7 &&
          d.attempts.every((a) => a.status === 'succeeded') &&
          d
        );
      },
      'the six manual attempts to be recorded',
      20_000,
    );
    expectLogMatches(after, answered.get(events[1].id)!);
    expect(
      [...after.attempts]
        .sort((a, b) => a.number - b.number)
        .map((a) => a.trigger),
    ).toEqual(['scheduled', ...Array(6).fill('manual')]);
    expect(after.status).toBe('succeeded');
    await holdsFor(
      () => hook.received.length === EVENTS + EVENTS / 3 + 6,
      1_000,
      'nothing more sent',
    );
    expect(maxInFlight).toBeLessThanOrEqual(LIMIT);
  });
});
