/**
 * Red team: hostile receivers. Whatever a receiver answers (1xx forever, protocol switches,
 * lying Content-Length, endless chunks, compressed or non-Latin-1 bytes, odd Retry-After,
 * redirects to elsewhere), every delivery reaches a final state within the retry schedule,
 * with at most one attempt per schedule entry, and nothing is sent anywhere else.
 */
import { gzipSync } from 'node:zlib';
import type { Socket } from 'node:net';
import request from 'supertest';
import { Tenant, createTenant } from './support/api';
import { DeliveryLog, holdsFor } from './support/delivery-api';
import {
  ADMIN_TOKEN,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import {
  RawReceiver,
  rawResponse,
  startRawReceiver,
} from './support/raw-receiver';
import { Receiver, startReceiver } from './support/receiver';

/** The e2e schedule: 4 scheduled attempts. */
const SCHEDULE = [0, 200, 400, 600];

const latin1 = (text: string) => Buffer.from(text, 'latin1');

/** Writes `bytes` unless the socket is gone. */
function write(socket: Socket, bytes: Buffer | string) {
  if (!socket.destroyed) socket.write(bytes);
}

/** Sends 102 Processing every 100 ms, forever. */
function processingForever(_n: number, socket: Socket) {
  const tick = () => {
    if (socket.destroyed) return;
    write(socket, 'HTTP/1.1 102 Processing\r\n\r\n');
    setTimeout(tick, 100);
  };
  tick();
}

let redirectTarget: Receiver;

interface Case {
  name: string;
  respond: (n: number, socket: Socket) => void;
  /** Final status expected of the delivery. */
  status: 'succeeded' | 'failed';
  /** Attempts expected; defaults to the schedule's length for failures, 1 for successes. */
  attempts?: number;
}

const CASES: Case[] = [
  {
    name: '102 Processing forever',
    respond: processingForever,
    status: 'failed',
  },
  {
    name: '101 Switching Protocols to nowhere',
    respond: (_n, s) =>
      write(
        s,
        'HTTP/1.1 101 Switching Protocols\r\nupgrade: evil\r\nconnection: upgrade\r\n\r\n\x00\x01garbage',
      ),
    status: 'failed',
  },
  {
    name: '100 Continue then 200',
    respond: (_n, s) => {
      write(s, 'HTTP/1.1 100 Continue\r\n\r\n');
      write(s, rawResponse(200, latin1('ok')));
    },
    status: 'succeeded',
  },
  {
    name: 'Content-Length longer than the body, then silence',
    respond: (_n, s) =>
      write(s, 'HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nshort'),
    status: 'failed',
  },
  {
    name: 'Content-Length shorter than the body, smuggling a second response',
    respond: (_n, s) =>
      write(
        s,
        'HTTP/1.1 500 X\r\ncontent-length: 2\r\n\r\nnoHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok',
      ),
    status: 'failed',
  },
  {
    name: 'a chunked body that never ends',
    respond: (_n, s) => {
      write(s, 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
      const tick = () => {
        if (s.destroyed) return;
        write(s, '1\r\nx\r\n');
        setTimeout(tick, 50);
      };
      tick();
    },
    status: 'failed',
  },
  {
    name: 'an invalid chunk size',
    respond: (_n, s) =>
      write(
        s,
        'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\nx\r\n0\r\n\r\n',
      ),
    status: 'failed',
  },
  {
    name: 'a gzip-compressed 200',
    respond: (_n, s) =>
      write(
        s,
        rawResponse(
          200,
          gzipSync(Buffer.from('{"ok":true}')),
          latin1('content-encoding: gzip\r\n'),
        ),
      ),
    status: 'succeeded',
  },
  {
    name: 'non-Latin-1 (UTF-8) header bytes and a fullwidth Retry-After on a 503',
    respond: (_n, s) =>
      write(
        s,
        rawResponse(
          503,
          Buffer.from('busy'),
          Buffer.from('x-evil: é€😀\r\nretry-after: ９\r\n', 'utf8'),
        ),
      ),
    status: 'failed',
  },
  ...[
    '-1',
    'NaN',
    '1e3',
    '0x10',
    '1.5',
    'Infinity',
    '',
    '0',
    '00000000000000000000001',
  ].map(
    (value): Case => ({
      name: `503 with Retry-After: "${value}"`,
      respond: (_n, s) =>
        write(
          s,
          rawResponse(503, latin1('x'), latin1(`retry-after: ${value}\r\n`)),
        ),
      status: 'failed',
    }),
  ),
  {
    name: '503 with two Retry-After headers, the second huge',
    respond: (_n, s) =>
      write(
        s,
        rawResponse(
          503,
          latin1('x'),
          latin1('retry-after: 0\r\nretry-after: 99999999\r\n'),
        ),
      ),
    status: 'failed',
  },
  ...[301, 302, 303, 307, 308].map(
    (code): Case => ({
      name: `${code} to another receiver`,
      respond: (_n, s) =>
        write(
          s,
          rawResponse(
            code,
            latin1(''),
            latin1(`location: ${redirectTarget.url}\r\n`),
          ),
        ),
      status: 'failed',
    }),
  ),
  {
    name: 'status 999',
    respond: (_n, s) => write(s, rawResponse(999, latin1('?'))),
    status: 'failed',
  },
  {
    name: 'HTTP/1.0 200 without a length, then close',
    respond: (_n, s) => s.end('HTTP/1.0 200 OK\r\n\r\nfine'),
    status: 'succeeded',
  },
  {
    name: 'a response before the request body is read, then reset',
    respond: (_n, s) => {
      write(s, rawResponse(200, latin1('ok')));
      s.resetAndDestroy();
    },
    status: 'succeeded',
  },
];

describe('redteam: hostile receivers', () => {
  let svc: E2eApp;
  let tenant: Tenant;
  const receivers: RawReceiver[] = [];
  const events = new Map<string, string>();

  const log = async (eventId: string): Promise<DeliveryLog[]> =>
    (
      await request(svc.url)
        .get(`/v1/events/${eventId}/deliveries`)
        .set(tenant.auth)
        .expect(200)
    ).body.data;

  beforeAll(async () => {
    svc = await startE2eApp({ retryScheduleMs: SCHEDULE });
    redirectTarget = await startReceiver();
    tenant = await createTenant(svc, 'rt-receivers');
    for (const [i, c] of CASES.entries()) {
      const receiver = await startRawReceiver(c.respond);
      receivers.push(receiver);
      const type = `rt.rcv.c${i}`;
      await request(svc.url)
        .post('/v1/endpoints')
        .set(tenant.auth)
        .send({ url: receiver.url, eventTypes: [type] })
        .expect(201);
      const ev = await request(svc.url)
        .post('/v1/events')
        .set(tenant.auth)
        .send({ type, payload: { i } })
        .expect(201);
      events.set(c.name, ev.body.id);
    }
  });

  afterAll(async () => {
    await Promise.all(receivers.map((r) => r.close()));
    await redirectTarget?.close();
    await svc?.close();
  });

  it.each(CASES.map((c, i) => [c.name, c, i] as const))(
    'should bring the delivery to a final state (%s) without endless re-sends',
    async (_name, c, i) => {
      const eventId = events.get(c.name)!;
      const [delivery] = await eventually(
        async () => {
          const data = await log(eventId);
          return (
            data.length === 1 &&
            ['succeeded', 'failed'].includes(data[0].status) &&
            data
          );
        },
        `a final state for ${c.name}`,
        40_000,
      );
      const expected =
        c.attempts ?? (c.status === 'failed' ? SCHEDULE.length : 1);
      expect({
        status: delivery.status,
        attempts: delivery.attemptCount,
      }).toEqual({
        status: c.status,
        attempts: expected,
      });
      const received = receivers[i].received.length;
      expect(received).toBeLessThanOrEqual(SCHEDULE.length);
      await holdsFor(
        () => receivers[i].received.length === received,
        1_000,
        `no further request for ${c.name}`,
      );
    },
  );

  it('should never follow a redirect', () => {
    expect(redirectTarget.received).toEqual([]);
  });

  it('should answer /health without counting unrecorded attempts', async () => {
    const res = await request(svc.url)
      .get('/health')
      .set('authorization', `Bearer ${ADMIN_TOKEN}`)
      .expect(200);
    expect(res.body.deliveries.unrecorded ?? 0).toBe(0);
  });
});
