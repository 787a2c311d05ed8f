import type { ServerResponse } from 'http';
import { deliveryApi, holdsFor } from './support/delivery-api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, Responder, startReceiver } from './support/receiver';

/** Slack for timer and clock granularity on the lower bounds. */
const MARGIN_MS = 25;
/** Longest response body the attempt log keeps. */
const MAX_RESPONSE_BYTES = 64 * 1024;

describe('when a receiver answers in a way that is not plain success', () => {
  let svc: E2eApp;
  const receivers: Receiver[] = [];
  const timers: NodeJS.Timeout[] = [];

  beforeAll(async () => {
    // Harness schedule 0,200,400,600 ms; a short timeout keeps the slow-receiver case short.
    svc = await startE2eApp({ deliveryTimeoutMs: 500 });
  });

  afterAll(async () => {
    timers.forEach(clearTimeout);
    await Promise.all(receivers.map((r) => r.close()));
    await svc?.close();
  });

  const receiver = async (respond: Responder) => {
    const started = await startReceiver(respond);
    receivers.push(started);
    return started;
  };
  const account = async () => deliveryApi(svc, await svc.createAccount());

  describe('when it answers 503 with Retry-After: 1', () => {
    it('should wait the Retry-After although the schedule step is 200 ms', async () => {
      const hook = await receiver((n, _r, res) => {
        if (n === 0) res.writeHead(503, { 'retry-after': '1' });
        res.end(n === 0 ? 'busy' : 'ok');
      });
      const client = await account();
      await client.createEndpoint(hook.url);
      const event = await client.publish('trip.delayed');

      const delivery = await client.deliveryWhen(
        event.id,
        (d) => d.status === 'succeeded',
        'the delivery to succeed',
      );
      expect(hook.received).toHaveLength(2);
      expect(hook.received[1].at - hook.received[0].at).toBeGreaterThanOrEqual(
        1_000 - MARGIN_MS,
      );
      const [first, second] = delivery.attempts;
      expect(first).toMatchObject({
        status: 'failed',
        statusCode: 503,
        errorClass: 'http_503',
        responseBody: 'busy',
      });
      expect(
        Date.parse(first.nextAttemptAt!) - Date.parse(first.finishedAt!),
      ).toBeGreaterThanOrEqual(1_000 - MARGIN_MS);
      expect(second).toMatchObject({ status: 'succeeded', statusCode: 200 });
    });
  });

  describe('when it answers 410 Gone', () => {
    it('should disable the endpoint at once and deliver nothing to it until it is enabled', async () => {
      const hook = await receiver((n, _r, res) => {
        res.statusCode = n === 0 ? 410 : 200;
        res.end(n === 0 ? 'gone' : 'ok');
      });
      const client = await account();
      const endpoint = await client.createEndpoint(hook.url);
      const first = await client.publish('trip.delayed', { n: 1 });

      const failed = await client.deliveryWhen(
        first.id,
        (d) => d.status === 'failed',
        'the delivery to fail',
      );
      expect(failed).toMatchObject({
        attemptCount: 1,
        lastStatusCode: 410,
        nextAttemptAt: null,
      });
      expect(failed.attempts).toHaveLength(1);
      expect(failed.attempts[0]).toMatchObject({
        status: 'failed',
        statusCode: 410,
        errorClass: 'http_410',
        nextAttemptAt: null,
      });
      const disabled = await client
        .api()
        .get(`/v1/endpoints/${endpoint.id}`)
        .set(client.auth)
        .expect(200);
      expect(disabled.body).toMatchObject({
        disabled: true,
        disabledReason: 'endpoint answered 410 Gone',
      });

      const whileDisabled = await client.publish('trip.delayed', { n: 2 });
      expect(whileDisabled.deliveries).toBe(0);
      expect(await client.log(whileDisabled.id)).toEqual([]);
      // Longer than the whole retry schedule and a reconcile: no second attempt comes.
      await holdsFor(
        () => hook.received.length === 1,
        1_500,
        'no request after the 410',
      );

      const enabled = await client
        .api()
        .post(`/v1/endpoints/${endpoint.id}/enable`)
        .set(client.auth)
        .expect(200);
      expect(enabled.body).toMatchObject({
        disabled: false,
        disabledReason: null,
      });
      const afterEnable = await client.publish('trip.delayed', { n: 3 });
      expect(afterEnable.deliveries).toBe(1);
      await client.deliveryWhen(
        afterEnable.id,
        (d) => d.status === 'succeeded',
        'the delivery after enable to succeed',
      );
      expect(hook.received.map((got) => got.headers['webhook-id'])).toEqual([
        first.id,
        afterEnable.id,
      ]);
      const [stillFailed] = await client.log(first.id);
      expect(stillFailed).toMatchObject({ status: 'failed', attemptCount: 1 });
    });
  });

  describe('when it answers 302 with a Location', () => {
    it('should count the redirect as a failure and never follow it', async () => {
      const target = await receiver((_n, _r, res) => res.end('ok'));
      const hook = await receiver((_n, _r, res) => {
        res.writeHead(302, { location: target.url });
        res.end();
      });
      const client = await account();
      const endpoint = await client.createEndpoint(hook.url);
      const event = await client.publish('trip.delayed');

      const failed = await client.deliveryWhen(
        event.id,
        (d) => d.status === 'failed',
        'the delivery to fail',
      );
      expect(hook.received).toHaveLength(4);
      expect(hook.received[0].headers['webhook-id']).toBe(event.id);
      expect(failed).toMatchObject({ attemptCount: 4, lastStatusCode: 302 });
      expect(failed.attempts.map((a) => [a.status, a.statusCode])).toEqual([
        ['failed', 302],
        ['failed', 302],
        ['failed', 302],
        ['failed', 302],
      ]);
      expect(failed.attempts[0].errorClass).toBe('http_302');
      expect(target.received).toEqual([]);
      // An ordinary failure: the endpoint stays enabled (only 410 disables at once).
      const after = await client
        .api()
        .get(`/v1/endpoints/${endpoint.id}`)
        .set(client.auth)
        .expect(200);
      expect(after.body).toMatchObject({
        disabled: false,
        disabledReason: null,
      });
    });
  });

  describe('when it answers later than the delivery timeout', () => {
    it('should record a timeout and try again', async () => {
      const hook = await receiver((n, _r, res) => {
        // Past the 500 ms override and the harness's 2 s default alike.
        if (n === 0) timers.push(setTimeout(() => res.end('late'), 3_000));
        else res.end('ok');
      });
      const client = await account();
      await client.createEndpoint(hook.url);
      const event = await client.publish('trip.delayed');

      const delivery = await client.deliveryWhen(
        event.id,
        (d) => d.status === 'succeeded',
        'the delivery to succeed',
      );
      expect(hook.received).toHaveLength(2);
      const [timedOut, second] = delivery.attempts;
      expect(timedOut).toMatchObject({
        status: 'failed',
        statusCode: null,
        errorClass: 'timeout',
        responseBody: null,
      });
      expect(timedOut.errorMessage).toMatch(/no complete response within/);
      expect(timedOut.durationMs).toBeGreaterThanOrEqual(500 - MARGIN_MS);
      expect(timedOut.nextAttemptAt).not.toBeNull();
      expect(second).toMatchObject({ status: 'succeeded', statusCode: 200 });
    });
  });

  describe('when it streams a body that never ends', () => {
    it('should keep the first 64 KiB, drop the connection and move on', async () => {
      let streamClosed = false;
      const chunk = Buffer.alloc(16 * 1024, 'x');
      const stream = (res: ServerResponse) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.on('close', () => (streamClosed = true));
        const pump = () => {
          while (!res.destroyed && res.write(chunk));
          if (!res.destroyed) res.once('drain', pump);
        };
        pump();
      };
      const hook = await receiver((n, _r, res) =>
        n === 0 ? stream(res) : res.end('ok'),
      );
      const client = await account();
      await client.createEndpoint(hook.url);
      const endless = await client.publish('trip.delayed', { n: 1 });

      const delivery = await client.deliveryWhen(
        endless.id,
        (d) => d.status === 'succeeded',
        'the delivery to be recorded',
      );
      expect(delivery.attempts).toHaveLength(1);
      const [attempt] = delivery.attempts;
      expect(attempt).toMatchObject({
        status: 'succeeded',
        statusCode: 200,
        responseTruncated: true,
      });
      expect(attempt.responseBody).toHaveLength(MAX_RESPONSE_BYTES);
      expect(attempt.responseBody).toBe('x'.repeat(MAX_RESPONSE_BYTES));
      await eventually(() => streamClosed, 'the stream to be cut');

      const next = await client.publish('trip.delayed', { n: 2 });
      const after = await client.deliveryWhen(
        next.id,
        (d) => d.status === 'succeeded',
        'the next delivery to succeed',
      );
      expect(after.attempts[0]).toMatchObject({
        statusCode: 200,
        responseBody: 'ok',
        responseTruncated: false,
      });
      expect(hook.received).toHaveLength(2);
    });
  });
});

describe('when a receiver answers 429 with a Retry-After shorter than the schedule step', () => {
  // Steps of 1.5 s (±20 %) are longer than the 1 s Retry-After can ask for.
  const STEP_MS = 1_500;
  let svc: E2eApp;
  let hook: Receiver;

  beforeAll(async () => {
    svc = await startE2eApp({ retryScheduleMs: [0, STEP_MS, STEP_MS, 200] });
    hook = await startReceiver((n, _r, res) => {
      if (n < 2) res.writeHead(429, { 'retry-after': String(n) });
      res.end(n < 2 ? 'slow down' : 'ok');
    });
  });

  afterAll(async () => {
    await hook?.close();
    await svc?.close();
  });

  it('should wait at least the next step after Retry-After: 0 and Retry-After: 1', async () => {
    const client = deliveryApi(svc, await svc.createAccount());
    await client.createEndpoint(hook.url);
    const event = await client.publish('trip.delayed');

    const delivery = await client.deliveryWhen(
      event.id,
      (d) => d.status === 'succeeded',
      'the delivery to succeed',
    );
    expect(hook.received).toHaveLength(3);
    expect(hook.received.map((got) => got.headers['webhook-id'])).toEqual([
      event.id,
      event.id,
      event.id,
    ]);
    for (const i of [1, 2]) {
      expect(hook.received[i].at - hook.received[i - 1].at).toBeGreaterThan(
        STEP_MS * 0.8 - MARGIN_MS,
      );
    }
    expect(delivery.attempts.map((a) => [a.status, a.statusCode])).toEqual([
      ['failed', 429],
      ['failed', 429],
      ['succeeded', 200],
    ]);
    expect(delivery.attempts[0].errorClass).toBe('http_429');
  });
});
