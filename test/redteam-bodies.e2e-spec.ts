/**
 * Red team: request bodies and query strings a hostile tenant sends, written as raw bytes (no
 * client-side re-encoding). Each must be accepted as the README says, or refused with a 4xx
 * JSON message; never a 500, never a silent drop.
 */
import * as http from 'node:http';
import request from 'supertest';
import { Tenant, createTenant, messageOf } from './support/api';
import { E2eApp, startE2eApp } from './support/harness';

interface RawAnswer {
  status: number;
  body: any;
  text: string;
}

/** POSTs raw bytes with exactly the headers given. */
function rawPost(
  base: string,
  path: string,
  headers: Record<string, string>,
  body: Buffer,
): Promise<RawAnswer> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(body.length) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: any;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body: parsed, text });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const JSON_TEXT = '{"type":"rt.body","payload":{"é":"ü","n":1}}';

function utf16be(text: string): Buffer {
  return Buffer.from(text, 'utf16le').swap16();
}

describe('redteam: request bodies', () => {
  let svc: E2eApp;
  let t: Tenant;

  beforeAll(async () => {
    svc = await startE2eApp();
    t = await createTenant(svc, 'rt-bodies');
  });

  afterAll(async () => {
    await svc?.close();
  });

  const post = (contentType: string, body: Buffer | string) =>
    rawPost(
      svc.url,
      '/v1/events',
      { ...t.auth, 'content-type': contentType },
      typeof body === 'string' ? Buffer.from(body) : body,
    );

  describe('charset spellings (held)', () => {
    it.each([
      ['application/json; charset="UTF-8"', Buffer.from(JSON_TEXT)],
      ['application/json; charset=utf8', Buffer.from(JSON_TEXT)],
      ['application/json;CHARSET=Utf-8', Buffer.from(JSON_TEXT)],
      ['application/json; charset = "utf-8"', Buffer.from(JSON_TEXT)],
      [
        'application/json; charset=utf-8',
        Buffer.concat([
          Buffer.from([0xef, 0xbb, 0xbf]),
          Buffer.from(JSON_TEXT),
        ]),
      ],
      ['application/json; charset=utf-16', utf16be(JSON_TEXT)],
      [
        'application/json; charset="UTF-16"',
        Buffer.concat([
          Buffer.from([0xff, 0xfe]),
          Buffer.from(JSON_TEXT, 'utf16le'),
        ]),
      ],
      ['application/json; charset=UTF-16LE', Buffer.from(JSON_TEXT, 'utf16le')],
      ['application/json; charset=utf-16be', utf16be(JSON_TEXT)],
      [
        'application/json',
        Buffer.concat([Buffer.from([0xfe, 0xff]), utf16be(JSON_TEXT)]),
      ],
    ])('should read %s and keep the payload text', async (ct, bytes) => {
      const res = await post(ct, bytes);
      expect(res.status).toBe(201);
      expect(res.text).toContain('"payload":{"é":"ü","n":1}');
    });

    it.each([
      [
        'application/json; charset=latin1',
        Buffer.from(JSON_TEXT, 'latin1'),
        415,
      ],
      [
        'application/json; charset=us-ascii',
        Buffer.from('{"type":"a","payload":{}}'),
        415,
      ],
      ['application/json; charset=utf-32', Buffer.from(JSON_TEXT), 415],
      ['application/json; charset=', Buffer.from(JSON_TEXT), 415],
      [
        'application/json; charset=utf-8',
        Buffer.from(JSON_TEXT, 'latin1'),
        400,
      ],
      [
        'application/json; charset=utf-16le',
        Buffer.from([0x7b, 0x00, 0x00]),
        400,
      ],
      ['application/json; charset=utf-8', utf16be(JSON_TEXT), 400],
    ])('should refuse %s (%#) with a JSON 4xx', async (ct, bytes, status) => {
      const res = await post(ct, bytes);
      expect(res.status).toBe(status);
      expect(res.body?.statusCode).toBe(status);
    });
  });

  describe('a charset parameter hidden in a quoted value', () => {
    // RFC 9110: parameter values may be quoted strings; `;charset=` inside one is not a
    // parameter. The real charset here is latin1, which the README says is a 415.
    it('should answer 415 for the real charset, not read latin1 bytes as UTF-8', async () => {
      const res = await post(
        'application/json; profile="x;charset=utf-8 y"; charset=latin1',
        Buffer.from('{"type":"rt.body","payload":{"a":"plain"}}', 'latin1'),
      );
      expect(res.status).toBe(415);
    });
  });

  describe('bodies that are JSON but not objects, or too deep (held)', () => {
    it.each([
      ['[]'],
      ['"x"'],
      ['1'],
      ['null'],
      ['true'],
      ['1e400'],
      ['['.repeat(200_000)],
      ['['.repeat(100_000) + ']'.repeat(100_000)],
      ['{"a":'.repeat(50_000) + '1' + '}'.repeat(50_000)],
      [
        `{"type":"rt.body","payload":${'['.repeat(100_000)}${']'.repeat(100_000)}}`,
      ],
      ['{"type":"rt.body","payload":[]}'],
      ['{"type":"rt.body","payload":"{}"}'],
      ['{"type":"rt.body","payload":null}'],
    ])('should answer 400 to %#', async (text) => {
      const res = await post('application/json', text);
      expect(res.status).toBe(400);
      expect(res.body?.statusCode).toBe(400);
    });
  });

  describe('payloads kept byte for byte (held)', () => {
    it.each([
      ['{"n":1e400,"m":-0,"big":123456789012345678901234567890,"f":1.0E-7}'],
      ['{"a":1,"a":2}'],
      [
        '{"\\u005f_proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}',
      ],
      ['{"__proto__":null,"constructor.prototype":1,"toString":"x"}'],
      ['{"s":"\\ud83d\\ude00\\u2028\\/"}'],
      ['{ }'],
    ])('should store, return and list %s unchanged', async (payload) => {
      const res = await post(
        'application/json',
        `{"type":"rt.kept",\n "payload" :${payload}  }`,
      );
      expect(res.status).toBe(201);
      expect(res.text).toContain(`"payload":${payload}`);
      const got = await request(svc.url)
        .get(`/v1/events/${res.body.id}`)
        .set(t.auth)
        .expect(200);
      expect(got.text).toContain(`"payload":${payload}`);
      expect({} as any).not.toHaveProperty('polluted');
    });
  });

  describe('top-level keys named like Object.prototype members (held)', () => {
    it.each([
      ['{"type":"a","payload":{},"\\u005f_proto__":{"type":"b"}}'],
      ['{"type":"a","payload":{},"\\u0063onstructor":{}}'],
      ['{"type":"a","payload":{},"hasOwnProperty":1}'],
      ['{"type":"a","payload":{},"prototype":1}'],
      ['{"type":"a","payload":{},"__defineGetter__":1}'],
    ])('should refuse %s with 400', async (text) => {
      const res = await post('application/json', text);
      expect(res.status).toBe(400);
    });
  });

  describe('query keys named like Object.prototype members', () => {
    // `?sort=asc` is a 400 (unknown property); these are unknown properties too and must
    // not be silently dropped.
    it.each(['__proto__', 'constructor', 'hasOwnProperty', 'toString'])(
      'should answer 400 to GET /v1/events?%s=1 like any unknown query key',
      async (key) => {
        const res = await request(svc.url)
          .get(`/v1/events?${key}=1`)
          .set(t.auth);
        expect(res.status).toBe(400);
      },
    );
  });

  describe('transport oddities (held)', () => {
    it('should answer a malformed percent-encoding in a path with JSON 400', async () => {
      const res = await request(svc.url).get('/v1/events/%E0%A4%A').set(t.auth);
      expect(res.status).toBe(400);
      expect(res.body.statusCode).toBe(400);
    });

    it.each(['gzip', 'identity, gzip', 'br', 'deflate'])(
      'should refuse Content-Encoding: %s with 415',
      async (encoding) => {
        const res = await rawPost(
          svc.url,
          '/v1/events',
          {
            ...t.auth,
            'content-type': 'application/json',
            'content-encoding': encoding,
          },
          Buffer.from(JSON_TEXT),
        );
        expect(res.status).toBe(415);
      },
    );

    it('should answer 400 JSON to a malformed body on a GET', async () => {
      const res = await rawPost(
        svc.url,
        '/v1/events',
        { ...t.auth, 'content-type': 'application/json' },
        Buffer.from('{"type":"rt.body","payload":{}}'),
      );
      expect(res.status).toBe(201);
      const again = await request(svc.url)
        .get('/v1/events')
        .set(t.auth)
        .set('content-type', 'application/json')
        .send('[1');
      expect(again.status).toBe(400);
      expect(messageOf(again)).toMatch(/JSON/);
    });
  });
});
