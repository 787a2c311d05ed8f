import { Webhook } from 'standardwebhooks';
import { deliveryApi, holdsFor } from './support/delivery-api';
import { E2eApp, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

/** The harness's retry schedule (ms before each attempt) and its ±20% jitter. */
const SCHEDULE_MS = [0, 200, 400, 600];
const JITTER = 0.2;
/** Slack for timer and clock granularity on the lower bounds. */
const MARGIN_MS = 25;

describe('when a receiver fails', () => {
  let svc: E2eApp;
  const receivers: Receiver[] = [];

  beforeAll(async () => {
    svc = await startE2eApp();
  });

  afterAll(async () => {
    await Promise.all(receivers.map((r) => r.close()));
    await svc?.close();
  });

  const setUp = async (respond: (n: number) => number) => {
    const receiver = await startReceiver((n, _r, res) => {
      res.statusCode = respond(n);
      res.end(res.statusCode === 200 ? 'ok' : 'boom');
    });
    receivers.push(receiver);
    const client = deliveryApi(svc, await svc.createAccount());
    const endpoint = await client.createEndpoint(receiver.url);
    return { receiver, client, endpoint };
  };

  describe('when it fails n times and then succeeds', () => {
    it('should send n+1 signed attempts of the same message on the retry schedule', async () => {
      const failures = SCHEDULE_MS.length - 1;
      const { receiver, client, endpoint } = await setUp((n) =>
        n < failures ? 500 : 200,
      );
      const event = await client.publish('trip.delayed', { minutes: 12 });
      expect(event.deliveries).toBe(1);

      const delivery = await client.deliveryWhen(
        event.id,
        (d) => d.status === 'succeeded',
        'the delivery to succeed',
      );
      expect(receiver.received).toHaveLength(failures + 1);
      const webhook = new Webhook(endpoint.secret);
      const timestamps = receiver.received.map((got) => {
        expect(got.headers['webhook-id']).toBe(event.id);
        expect(webhook.verify(got.body, got.headers as any)).toMatchObject({
          type: 'trip.delayed',
          data: { minutes: 12 },
        });
        const ts = Number(got.headers['webhook-timestamp']);
        // Fresh per attempt: signed just before this request was sent.
        expect(ts).toBeLessThanOrEqual(Math.floor(got.at / 1000));
        expect(ts).toBeGreaterThanOrEqual(Math.floor(got.at / 1000) - 1);
        return ts;
      });
      expect([...timestamps].sort((a, b) => a - b)).toEqual(timestamps);
      for (let i = 1; i <= failures; i++) {
        const gap = receiver.received[i].at - receiver.received[i - 1].at;
        expect(gap).toBeGreaterThanOrEqual(
          SCHEDULE_MS[i] * (1 - JITTER) - MARGIN_MS,
        );
      }

      expect(delivery).toMatchObject({
        status: 'succeeded',
        attemptCount: failures + 1,
        lastStatusCode: 200,
        nextAttemptAt: null,
      });
      const { attempts } = delivery;
      expect(attempts.map((a) => [a.number, a.status, a.statusCode])).toEqual([
        [1, 'failed', 500],
        [2, 'failed', 500],
        [3, 'failed', 500],
        [4, 'succeeded', 200],
      ]);
      for (const attempt of attempts) {
        expect(attempt.trigger).toBe('scheduled');
      }
      for (let i = 0; i < failures; i++) {
        const failed = attempts[i];
        expect(failed).toMatchObject({
          errorClass: 'http_500',
          responseBody: 'boom',
          responseTruncated: false,
        });
        const next = Date.parse(failed.nextAttemptAt!);
        const finished = Date.parse(failed.finishedAt!);
        expect(next - finished).toBeGreaterThanOrEqual(
          SCHEDULE_MS[i + 1] * (1 - JITTER) - MARGIN_MS,
        );
        expect(next - finished).toBeLessThan(
          SCHEDULE_MS[i + 1] * (1 + JITTER) + 500,
        );
        expect(Date.parse(attempts[i + 1].startedAt)).toBeGreaterThanOrEqual(
          next - MARGIN_MS,
        );
      }
      expect(attempts[failures]).toMatchObject({
        responseBody: 'ok',
        errorClass: null,
        nextAttemptAt: null,
      });
    });
  });

  describe('when it always fails', () => {
    it('should fail the delivery after the last scheduled attempt and send a manual retry once', async () => {
      let status = 500;
      const { receiver, client } = await setUp(() => status);
      const event = await client.publish('trip.delayed', { minutes: 5 });

      const failed = await client.deliveryWhen(
        event.id,
        (d) => d.status === 'failed',
        'the delivery to fail',
      );
      expect(receiver.received).toHaveLength(SCHEDULE_MS.length);
      expect(failed).toMatchObject({
        attemptCount: SCHEDULE_MS.length,
        lastStatusCode: 500,
        nextAttemptAt: null,
      });
      expect(failed.attempts.map((a) => [a.status, a.statusCode])).toEqual(
        SCHEDULE_MS.map(() => ['failed', 500]),
      );
      expect(failed.attempts.at(-1)!.nextAttemptAt).toBeNull();

      const retry = await client
        .api()
        .post(`/v1/deliveries/${failed.id}/retry`)
        .set(client.auth)
        .expect(202);
      expect(retry.body).toMatchObject({
        deliveryId: failed.id,
        queued: true,
      });
      const afterManual = await client.deliveryWhen(
        event.id,
        (d) =>
          d.attempts.length === 5 && d.attempts[4].status !== 'in_progress',
        'the manual attempt to be recorded',
      );
      expect(receiver.received).toHaveLength(5);
      expect(receiver.received[4].headers['webhook-id']).toBe(event.id);
      expect(afterManual).toMatchObject({
        status: 'failed',
        attemptCount: 5,
        nextAttemptAt: null,
      });
      expect(afterManual.attempts[4]).toMatchObject({
        number: 5,
        trigger: 'manual',
        status: 'failed',
        statusCode: 500,
        nextAttemptAt: null,
      });
      // A failed manual attempt is not retried: longer than the longest step and a reconcile.
      await holdsFor(
        () => receiver.received.length === 5,
        SCHEDULE_MS.at(-1)! * (1 + JITTER) + 1_500,
        'no attempt after the failed manual retry',
      );
      const [settled] = await client.log(event.id);
      expect(settled).toMatchObject({ status: 'failed', attemptCount: 5 });

      status = 200;
      await client
        .api()
        .post(`/v1/deliveries/${failed.id}/retry`)
        .set(client.auth)
        .expect(202);
      const succeeded = await client.deliveryWhen(
        event.id,
        (d) => d.status === 'succeeded',
        'the second manual retry to succeed',
      );
      expect(receiver.received).toHaveLength(6);
      expect(succeeded).toMatchObject({
        attemptCount: 6,
        lastStatusCode: 200,
        nextAttemptAt: null,
      });
      expect(succeeded.attempts[5]).toMatchObject({
        number: 6,
        trigger: 'manual',
        status: 'succeeded',
        statusCode: 200,
      });
    });
  });

  describe('when an endpoint recovers', () => {
    it('should re-send its failed deliveries since the given time', async () => {
      let status = 500;
      const { receiver, client, endpoint } = await setUp(() => status);
      const before = await client.publish('trip.delayed', { n: 0 });
      await client.deliveryWhen(
        before.id,
        (d) => d.status === 'failed',
        'the first delivery to fail',
      );
      const since = new Date().toISOString();
      const events = [
        await client.publish('trip.delayed', { n: 1 }),
        await client.publish('trip.delayed', { n: 2 }),
      ];
      for (const event of events) {
        await client.deliveryWhen(
          event.id,
          (d) => d.status === 'failed',
          'the delivery to fail',
        );
      }
      const sent = receiver.received.length;
      expect(sent).toBe(3 * SCHEDULE_MS.length);

      status = 200;
      const res = await client
        .api()
        .post(`/v1/endpoints/${endpoint.id}/recover`)
        .set(client.auth)
        .send({ since })
        .expect(202);
      expect(res.body).toMatchObject({ endpointId: endpoint.id, queued: 2 });

      for (const event of events) {
        const delivery = await client.deliveryWhen(
          event.id,
          (d) => d.status === 'succeeded',
          'the recovered delivery to succeed',
        );
        expect(delivery.attempts.at(-1)).toMatchObject({
          number: SCHEDULE_MS.length + 1,
          trigger: 'manual',
          status: 'succeeded',
          statusCode: 200,
        });
      }
      expect(
        receiver.received
          .slice(sent)
          .map((got) => got.headers['webhook-id'])
          .sort(),
      ).toEqual(events.map((e) => e.id).sort());
      // The delivery created before `since` is left alone.
      await holdsFor(
        () => receiver.received.length === sent + 2,
        500,
        'only the recovered deliveries to be sent',
      );
      const [untouched] = await client.log(before.id);
      expect(untouched).toMatchObject({
        status: 'failed',
        attemptCount: SCHEDULE_MS.length,
      });
    });

    it('should refuse a since older than 14 days with 422', async () => {
      const { client, endpoint } = await setUp(() => 200);
      const since = new Date(
        Date.now() - 14 * 24 * 3600 * 1000 - 60_000,
      ).toISOString();
      const res = await client
        .api()
        .post(`/v1/endpoints/${endpoint.id}/recover`)
        .set(client.auth)
        .send({ since })
        .expect(422);
      expect(res.body.message).toMatch(/14 days/);
    });
  });
});

describe('when the retry schedule starts with a wait', () => {
  const FIRST_MS = 1_500;
  let svc: E2eApp;
  let receiver: Receiver;

  beforeAll(async () => {
    svc = await startE2eApp({ retryScheduleMs: [FIRST_MS, 200] });
    receiver = await startReceiver();
  });

  afterAll(async () => {
    await receiver?.close();
    await svc?.close();
  });

  it('should send the first attempt only after the first entry of the schedule', async () => {
    const client = deliveryApi(svc, await svc.createAccount());
    await client.createEndpoint(receiver.url);
    const publishedAt = Date.now();
    const event = await client.publish('trip.delayed');
    const [pending] = await client.log(event.id);
    expect(pending.status).toBe('pending');
    expect(Date.parse(pending.nextAttemptAt!) - publishedAt).toBeGreaterThan(
      FIRST_MS * (1 - JITTER) - MARGIN_MS,
    );
    await client.deliveryWhen(
      event.id,
      (d) => d.status === 'succeeded',
      'the delivery to succeed',
    );
    expect(receiver.received).toHaveLength(1);
    expect(receiver.received[0].at - publishedAt).toBeGreaterThanOrEqual(
      FIRST_MS * (1 - JITTER) - MARGIN_MS,
    );
  });
});
