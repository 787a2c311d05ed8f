import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/** One AES-256 key and the id stored with every value it encrypts. */
export interface EncryptionKey {
  id: string;
  key: Buffer;
}

const VERSION = 'v1';
const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const SEALED =
  /^v1\.([A-Za-z0-9_-]{1,32})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]*)\.([A-Za-z0-9_-]{22})$/;

/** Raised when a sealed value cannot be opened: unknown key id, tampering, wrong context. */
export class SecretBoxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretBoxError';
  }
}

/**
 * Parses `SECRETS_ENCRYPTION_KEYS`: comma-separated `<id>:<base64 of 32 bytes>`; the first key
 * encrypts, every key decrypts (list a new key first to rotate, keep the old ones until no
 * value uses them). Throws with the variable's name on any malformed entry.
 */
export function parseEncryptionKeys(raw: string | undefined): EncryptionKey[] {
  const entries = (raw ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
  const keys = entries.map((entry) => {
    const colon = entry.indexOf(':');
    const id = entry.slice(0, colon);
    const encoded = entry.slice(colon + 1);
    const key = Buffer.from(encoded, 'base64');
    if (
      colon < 1 ||
      !KEY_ID.test(id) ||
      !/^[A-Za-z0-9+/]+={0,2}$/.test(encoded) ||
      key.length !== 32
    ) {
      throw new Error(
        'SECRETS_ENCRYPTION_KEYS entries must be "<id>:<base64 of 32 random bytes>" with an id ' +
          'of letters, digits, "_" or "-", e.g. k1:$(openssl rand -base64 32)',
      );
    }
    return { id, key };
  });
  const ids = new Set(keys.map((k) => k.id));
  if (ids.size !== keys.length) {
    throw new Error('SECRETS_ENCRYPTION_KEYS has the same key id twice');
  }
  return keys;
}

/**
 * AES-256-GCM encryption of small secrets (webhook signing secrets, stored responses that
 * carry secrets). A sealed value is `v1.<key id>.<iv>.<ciphertext>.<tag>` (base64url parts);
 * `context` (e.g. the endpoint id) is authenticated as additional data, so a value copied to
 * another row does not open there.
 */
export class SecretBox {
  private readonly byId: Map<string, Buffer>;

  constructor(private readonly keys: EncryptionKey[]) {
    if (keys.length === 0) {
      throw new Error('SecretBox needs at least one encryption key');
    }
    this.byId = new Map(keys.map((k) => [k.id, k.key]));
  }

  /** Id of the key new values are encrypted with. */
  get currentKeyId(): string {
    return this.keys[0].id;
  }

  /** Encrypts `plaintext` with the current key, bound to `context`. */
  seal(plaintext: string, context: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.keys[0].key, iv);
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const data = Buffer.concat([
      cipher.update(plaintext, 'utf8'),
      cipher.final(),
    ]);
    return [
      VERSION,
      this.currentKeyId,
      iv.toString('base64url'),
      data.toString('base64url'),
      cipher.getAuthTag().toString('base64url'),
    ].join('.');
  }

  /** Decrypts a value sealed for `context`; throws {@link SecretBoxError} otherwise. */
  open(sealed: string, context: string): string {
    const match = SEALED.exec(sealed);
    if (!match) throw new SecretBoxError('not a sealed value');
    const [, keyId, iv, data, tag] = match;
    const key = this.byId.get(keyId);
    if (!key) {
      throw new SecretBoxError(
        `value is sealed with key "${keyId}", which SECRETS_ENCRYPTION_KEYS does not list`,
      );
    }
    try {
      const decipher = createDecipheriv(
        'aes-256-gcm',
        key,
        Buffer.from(iv, 'base64url'),
      );
      decipher.setAAD(Buffer.from(context, 'utf8'));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([
        decipher.update(Buffer.from(data, 'base64url')),
        decipher.final(),
      ]).toString('utf8');
    } catch {
      throw new SecretBoxError(
        'sealed value does not authenticate (wrong key, context or tampered)',
      );
    }
  }

  /** Whether a value is sealed at all (legacy rows hold plaintext). */
  static isSealed(value: unknown): value is string {
    return typeof value === 'string' && SEALED.test(value);
  }

  /** Whether a sealed value uses another key than the current one (re-seal it to rotate). */
  isStale(sealed: string): boolean {
    return SEALED.exec(sealed)?.[1] !== this.currentKeyId;
  }
}
