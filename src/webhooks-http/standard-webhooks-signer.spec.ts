import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import {
  buildHeaders,
  generateSecret,
  secretKey,
  sign,
  signatureHeader,
  unixSeconds,
} from './standard-webhooks-signer';

const body = JSON.stringify({ type: 'trip.delayed', data: { tripId: 't_1' } });

describe('standard webhooks signer', () => {
  it('generates whsec_ secrets of 32 random bytes', () => {
    const secret = generateSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(secretKey(secret)).toHaveLength(32);
    expect(generateSecret()).not.toBe(secret);
  });

  it('matches the reference signature from the spec examples', () => {
    expect(
      sign(
        'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
        'msg_p5jXN8AQM9LWM0D4loKWxJek',
        1614265330,
        '{"test": 2432232314}',
      ),
    ).toBe('v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  });

  it('agrees with the standardwebhooks library', () => {
    const secret = generateSecret();
    const ts = unixSeconds();
    expect(sign(secret, 'msg_1', ts, body)).toBe(
      new Webhook(secret).sign('msg_1', new Date(ts * 1000), body),
    );
  });

  it('builds headers that the standardwebhooks library verifies', () => {
    const secret = generateSecret();
    const headers = buildHeaders([secret], 'msg_42', unixSeconds(), body);
    expect(headers).toEqual({
      'webhook-id': 'msg_42',
      'webhook-timestamp': expect.stringMatching(/^\d+$/),
      'webhook-signature': expect.stringMatching(/^v1,[A-Za-z0-9+/]+=*$/),
      'content-type': 'application/json',
    });
    expect(new Webhook(secret).verify(body, headers)).toEqual(JSON.parse(body));
    expect(() => new Webhook(secret).verify(`${body} `, headers)).toThrow(
      WebhookVerificationError,
    );
    expect(() => new Webhook(generateSecret()).verify(body, headers)).toThrow(
      WebhookVerificationError,
    );
  });

  it('signs with every secret during rotation; either one verifies', () => {
    const [oldSecret, newSecret] = [generateSecret(), generateSecret()];
    const ts = unixSeconds();
    const header = signatureHeader([oldSecret, newSecret], 'msg_7', ts, body);
    expect(header.split(' ')).toEqual([
      sign(oldSecret, 'msg_7', ts, body),
      sign(newSecret, 'msg_7', ts, body),
    ]);
    const headers = buildHeaders([oldSecret, newSecret], 'msg_7', ts, body);
    expect(headers['webhook-signature']).toBe(header);
    for (const secret of [oldSecret, newSecret]) {
      expect(new Webhook(secret).verify(body, headers)).toEqual(
        JSON.parse(body),
      );
    }
    expect(() => new Webhook(generateSecret()).verify(body, headers)).toThrow(
      'No matching signature found',
    );
  });

  it('rejects malformed input', () => {
    expect(() => signatureHeader([], 'msg', 1, body)).toThrow(
      'At least one secret is required',
    );
    expect(() => sign('whsec_', 'msg', 1, body)).toThrow('base64');
    expect(() => sign('whsec_not base64!', 'msg', 1, body)).toThrow('base64');
    expect(() => sign(generateSecret(), 'msg', 1.5, body)).toThrow(
      'timestampSeconds',
    );
  });

  it('converts dates to Unix seconds', () => {
    expect(unixSeconds(new Date('2024-01-01T00:00:00.999Z'))).toBe(1704067200);
    expect(unixSeconds(1704067200999)).toBe(1704067200);
  });
});
