import type { Socket } from 'net';
import request from 'supertest';
import { deliveryApi, DeliveryLog, holdsFor } from './support/delivery-api';
import { ADMIN_TOKEN, E2eApp, startE2eApp } from './support/harness';
import {
  RawReceiver,
  RawResponder,
  rawResponse,
  startRawReceiver,
} from './support/raw-receiver';

/** The harness's retry schedule has four entries: at most four scheduled attempts. */
const ATTEMPTS = 4;
const TIMEOUT_MS = 500;

describe('when a receiver answers with hostile bytes', () => {
  let svc: E2eApp;
  const receivers: RawReceiver[] = [];
  const timers: NodeJS.Timeout[] = [];

  beforeAll(async () => {
    svc = await startE2eApp({
      deliveryTimeoutMs: TIMEOUT_MS,
      deliveryLeaseMarginMs: 200,
    });
  });

  afterAll(async () => {
    timers.forEach(clearInterval);
    await Promise.all(receivers.map((r) => r.close()));
    await svc?.close();
  });

  const receiver = async (respond: RawResponder) => {
    const started = await startRawReceiver(respond);
    receivers.push(started);
    return started;
  };

  /** Publishes one event to a fresh endpoint at `hook`; resolves once its delivery is final. */
  async function deliverTo(hook: RawReceiver): Promise<DeliveryLog> {
    const client = deliveryApi(svc, await svc.createAccount());
    await client.createEndpoint(hook.url);
    const event = await client.publish('trip.delayed', { n: 1 });
    await client.deliveryWhen(
      event.id,
      (d) => d.status === 'succeeded' || d.status === 'failed',
      'the delivery to reach a final state',
    );
    // Final means final: no further request arrives (a lease expiry would send one).
    const sent = hook.received.length;
    await holdsFor(
      () => hook.received.length === sent,
      1_500,
      'no request after the final state',
    );
    const [after] = await client.log(event.id);
    expect(after.attempts.map((a) => a.status)).not.toContain('interrupted');
    expect(after.attempts.map((a) => a.status)).not.toContain('in_progress');
    return after;
  }

  const answer = (status: number, body: Buffer, headers?: Buffer) => {
    return (_n: number, socket: Socket) =>
      socket.write(rawResponse(status, body, headers));
  };

  describe('when it answers 200 with NUL bytes in the body', () => {
    it('should record the attempt once, with the NULs replaced, and succeed', async () => {
      const hook = await receiver(answer(200, Buffer.from('ok\0\0done')));
      const delivery = await deliverTo(hook);
      expect(hook.received).toHaveLength(1);
      expect(delivery).toMatchObject({ status: 'succeeded', attemptCount: 1 });
      expect(delivery.attempts).toHaveLength(1);
      expect(delivery.attempts[0]).toMatchObject({
        status: 'succeeded',
        statusCode: 200,
        responseBody: 'ok\uFFFD\uFFFDdone',
      });
    });
  });

  describe('when it answers 200 with bytes that are not UTF-8', () => {
    it('should record the attempt with replacement characters and succeed', async () => {
      const bytes = Buffer.from([
        0x61, 0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0x00, 0x62,
      ]);
      const hook = await receiver(answer(200, bytes));
      const delivery = await deliverTo(hook);
      expect(hook.received).toHaveLength(1);
      expect(delivery.status).toBe('succeeded');
      const body = delivery.attempts[0].responseBody!;
      expect(body.startsWith('a\uFFFD')).toBe(true);
      expect(body.endsWith('\uFFFDb')).toBe(true);
      expect(body).not.toContain('\0');
    });
  });

  describe('when it answers 500 with NUL bytes, over and over', () => {
    it('should record every attempt and fail after the schedule', async () => {
      const hook = await receiver(answer(500, Buffer.alloc(100 * 1024, 0)));
      const delivery = await deliverTo(hook);
      expect(hook.received).toHaveLength(ATTEMPTS);
      expect(delivery).toMatchObject({
        status: 'failed',
        attemptCount: ATTEMPTS,
      });
      for (const attempt of delivery.attempts) {
        expect(attempt).toMatchObject({
          status: 'failed',
          statusCode: 500,
          responseTruncated: true,
        });
        expect(attempt.responseBody).toBe('\uFFFD'.repeat(64 * 1024));
      }
    });
  });

  describe('when its headers are hostile', () => {
    it.each([
      ['a 100 KiB header', Buffer.from(`x-big: ${'a'.repeat(100 * 1024)}\r\n`)],
      ['a NUL byte in a header value', Buffer.from('x-nul: a\0b\r\n')],
      [
        'a Retry-After with a NUL byte',
        Buffer.from('retry-after: 1\0\r\n', 'latin1'),
      ],
      ['a header name that is not a token', Buffer.from('x y\xff: 1\r\n')],
    ])(
      'should record %s as a failed attempt and stop after the schedule',
      async (_what, headers) => {
        const hook = await receiver(answer(200, Buffer.from('ok'), headers));
        const delivery = await deliverTo(hook);
        expect(hook.received).toHaveLength(ATTEMPTS);
        expect(delivery).toMatchObject({
          status: 'failed',
          attemptCount: ATTEMPTS,
        });
        for (const attempt of delivery.attempts) {
          expect(attempt.status).toBe('failed');
          expect(attempt.errorMessage).toEqual(expect.any(String));
        }
      },
    );
  });

  describe('when its answer is not an ordinary HTTP response', () => {
    it.each([
      [
        '101 Switching Protocols',
        'HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: x\r\n\r\n\0\0',
      ],
      ['status 999', 'HTTP/1.1 999 X\r\ncontent-length: 2\r\n\r\nok'],
      ['a status line of binary noise', '\0\xff\xfe\r\n\r\n'],
      ['nothing (the connection closes)', ''],
    ])(
      'should record %s as a failed attempt and stop after the schedule',
      async (_what, bytes) => {
        const hook = await receiver((_n, socket) =>
          socket.end(Buffer.from(bytes, 'latin1')),
        );
        const delivery = await deliverTo(hook);
        expect(hook.received).toHaveLength(ATTEMPTS);
        expect(delivery).toMatchObject({
          status: 'failed',
          attemptCount: ATTEMPTS,
        });
        for (const attempt of delivery.attempts) {
          expect(attempt.status).toBe('failed');
        }
      },
    );
  });

  describe('when it trickles its body one byte at a time', () => {
    it('should record a timeout for each attempt and stop after the schedule', async () => {
      const hook = await receiver((_n, socket) => {
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n');
        const timer = setInterval(() => {
          if (socket.destroyed) return clearInterval(timer);
          socket.write('\0');
        }, 50);
        timers.push(timer);
      });
      const delivery = await deliverTo(hook);
      expect(hook.received).toHaveLength(ATTEMPTS);
      expect(delivery.status).toBe('failed');
      for (const attempt of delivery.attempts) {
        expect(attempt).toMatchObject({
          status: 'failed',
          errorClass: 'timeout',
        });
        expect(attempt.durationMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 25);
      }
    });
  });
});

describe('when the outcome of an attempt cannot be recorded', () => {
  let svc: E2eApp;
  let hook: RawReceiver;
  const failing = `hostile_refuse_${process.pid}`;

  beforeAll(async () => {
    // NOTE: the lease (timeout + margin) must outlast sending and recording: a 2xx is recorded
    // in a batch, and when the batch is refused each outcome again on its own. With a 200 ms
    // margin a loaded machine took longer, the lease expired and the reconciler sent the
    // delivery again (at-least-once as designed; the service's default margin is 10 s).
    svc = await startE2eApp({
      deliveryTimeoutMs: TIMEOUT_MS,
      deliveryLeaseMarginMs: 1000,
    });
    hook = await startRawReceiver((_n, socket) =>
      socket.write(rawResponse(200, Buffer.from('poison'))),
    );
    // A real Postgres refusal (as a NUL byte used to cause): an outcome mentioning
    // "poison", or any outcome of a delivery to an endpoint described "refuse all", fails.
    await svc.dataSource.query(`
      CREATE OR REPLACE FUNCTION ${failing}() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.response_body LIKE '%poison%' OR EXISTS (
          SELECT 1 FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id
          WHERE d.id = NEW.delivery_id AND e.description = 'refuse all')
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

  const health = async () =>
    (
      await request(svc.url)
        .get('/health')
        .set('authorization', `Bearer ${ADMIN_TOKEN}`)
        .expect(200)
    ).body.deliveries;

  it('should record the attempt without the response body and count the failure', async () => {
    const client = deliveryApi(svc, await svc.createAccount());
    await client.createEndpoint(hook.url);
    const before = hook.received.length;
    const event = await client.publish('trip.delayed');
    const delivery = await client.deliveryWhen(
      event.id,
      (d) => d.status === 'succeeded',
      'the delivery to succeed',
    );
    expect(hook.received.length - before).toBe(1);
    expect(delivery.attempts).toHaveLength(1);
    expect(delivery.attempts[0]).toMatchObject({
      status: 'succeeded',
      statusCode: 200,
      responseBody: null,
      errorMessage: expect.stringMatching(/^the response could not be stored/),
    });
    expect((await health()).recordFailures).toBeGreaterThanOrEqual(1);
  });

  it('should stop sending after the attempt limit when no outcome can be recorded', async () => {
    const client = deliveryApi(svc, await svc.createAccount());
    const endpoint = await client.createEndpoint(hook.url);
    await client
      .api()
      .patch(`/v1/endpoints/${endpoint.id}`)
      .set(client.auth)
      .send({ description: 'refuse all' })
      .expect(200);
    const before = hook.received.length;
    const event = await client.publish('trip.delayed');
    const delivery = await client.deliveryWhen(
      event.id,
      (d) => d.status === 'failed',
      'the delivery to give up',
      30_000,
    );
    await holdsFor(
      () => hook.received.length - before === ATTEMPTS,
      2_000,
      `exactly ${ATTEMPTS} requests`,
    );
    expect(delivery.lastError).toMatch(/attempt limit/);
    expect(delivery.attempts.map((a) => a.status)).toEqual(
      Array(ATTEMPTS).fill('interrupted'),
    );
    const stats = await health();
    expect(stats.unrecorded).toBeGreaterThanOrEqual(ATTEMPTS);
    expect(stats.gaveUp).toBeGreaterThanOrEqual(1);
  });
});
