import { deliveryApi, DeliveryLog, holdsFor } from './support/delivery-api';
import { E2eApp, startE2eApp } from './support/harness';
import { RawReceiver, startRawReceiver } from './support/raw-receiver';

/**
 * A receiver answers 2xx, completely (status line, headers, the whole Content-Length), and
 * writes a few more bytes in the same segment: a Content-Length counted in characters for a
 * body with a non-ASCII character, a 204 with content, a `Connection: close` answer with a
 * trailing newline of junk. The answer it gave is complete: the webhook was accepted. Node's
 * parser then fails on the extra bytes (HPE_INVALID_CONSTANT / HPE_CLOSED_CONNECTION) and
 * `req.on('error')` in webhook-sender.ts settles the exchange as an error before the
 * response's 'end' (a tick later): the attempt is recorded failed with status 2xx, and the
 * same message is sent again on every step of the schedule.
 */
describe('adversarial6: a complete 2xx answer followed by extra bytes', () => {
  let svc: E2eApp;
  const receivers: RawReceiver[] = [];

  beforeAll(async () => {
    svc = await startE2eApp({ deliveryTimeoutMs: 1_000 });
  });

  afterAll(async () => {
    await Promise.all(receivers.map((r) => r.close()));
    await svc?.close();
  });

  async function deliverTo(bytes: Buffer) {
    const hook = await startRawReceiver((_n, socket) => socket.write(bytes));
    receivers.push(hook);
    const client = deliveryApi(svc, await svc.createAccount());
    await client.createEndpoint(hook.url);
    const event = await client.publish('trip.delayed', { n: 1 });
    const delivery: DeliveryLog = await client.deliveryWhen(
      event.id,
      (d) => d.status === 'succeeded' || d.status === 'failed',
      'the delivery to reach a final state',
    );
    const sent = hook.received.length;
    await holdsFor(
      () => hook.received.length === sent,
      1_000,
      'no request after the final state',
    );
    return { hook, delivery };
  }

  it.each([
    [
      'a Content-Length counted in characters (one byte of the body left over)',
      Buffer.concat([
        Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 16\r\n\r\n'),
        Buffer.from('{"received":"é"}', 'utf8'),
      ]),
      200,
      '{"received":"é"',
    ],
    [
      'a 204 No Content with content',
      Buffer.from(
        'HTTP/1.1 204 No Content\r\ncontent-length: 11\r\n\r\n{"ok":true}',
      ),
      204,
      '',
    ],
    [
      'Connection: close and bytes after the body',
      Buffer.from(
        'HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok\r\n\r\nx',
      ),
      200,
      'ok',
    ],
  ])(
    'should record %s as the success it was, sent once',
    async (_what, bytes, statusCode, responseBody) => {
      const { hook, delivery } = await deliverTo(bytes);
      expect(hook.received).toHaveLength(1);
      expect(delivery).toMatchObject({
        status: 'succeeded',
        attemptCount: 1,
        lastStatusCode: statusCode,
      });
      expect(delivery.attempts).toHaveLength(1);
      expect(delivery.attempts[0]).toMatchObject({
        status: 'succeeded',
        statusCode,
        errorClass: null,
        responseBody,
      });
    },
  );
});
