import { randomBytes } from 'node:crypto';
import { SecretBox, SecretBoxError, parseEncryptionKeys } from './secret-box';

const key = (id: string) => `${id}:${randomBytes(32).toString('base64')}`;

describe('SecretBox', () => {
  const [k1, k2] = [key('k1'), key('k2')];

  it('should seal with the first key and open with any listed key', () => {
    const old = new SecretBox(parseEncryptionKeys(k1));
    const sealed = old.seal('whsec_abc', 'endpoint:1');
    expect(sealed).toMatch(/^v1\.k1\./);
    expect(sealed).not.toContain('whsec_abc');
    const rotated = new SecretBox(parseEncryptionKeys(`${k2},${k1}`));
    expect(rotated.open(sealed, 'endpoint:1')).toBe('whsec_abc');
    expect(rotated.isStale(sealed)).toBe(true);
    const resealed = rotated.seal('whsec_abc', 'endpoint:1');
    expect(resealed).toMatch(/^v1\.k2\./);
    expect(rotated.isStale(resealed)).toBe(false);
  });

  it('should use a fresh IV per value', () => {
    const box = new SecretBox(parseEncryptionKeys(k1));
    expect(box.seal('same', 'c')).not.toBe(box.seal('same', 'c'));
  });

  it('should refuse another context, a tampered value and an unknown key', () => {
    const box = new SecretBox(parseEncryptionKeys(k1));
    const sealed = box.seal('whsec_abc', 'endpoint:1');
    expect(() => box.open(sealed, 'endpoint:2')).toThrow(SecretBoxError);
    const parts = sealed.split('.');
    parts[3] = Buffer.from('x').toString('base64url') + parts[3].slice(2);
    expect(() => box.open(parts.join('.'), 'endpoint:1')).toThrow(
      /does not authenticate/,
    );
    const other = new SecretBox(parseEncryptionKeys(k2));
    expect(() => other.open(sealed, 'endpoint:1')).toThrow(
      /sealed with key "k1"/,
    );
    expect(() => box.open('whsec_plain', 'endpoint:1')).toThrow(
      /not a sealed value/,
    );
  });

  it.each([
    ['a key without id', randomBytes(32).toString('base64')],
    ['a short key', `k1:${randomBytes(16).toString('base64')}`],
    ['a key id with a dot', `k.1:${randomBytes(32).toString('base64')}`],
    ['a key that is not base64', 'k1:not base64 at all!!'],
    [
      'the same id twice',
      `${k1},${k1.replace(/:.*/, ':')}${randomBytes(32).toString('base64')}`,
    ],
  ])('should refuse %s', (_what, raw) => {
    expect(() => parseEncryptionKeys(raw)).toThrow(/SECRETS_ENCRYPTION_KEYS/);
  });
});
