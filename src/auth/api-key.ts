import { createHash, randomBytes } from 'crypto';

/** A new API key: shown once to its owner, stored only as its hash. */
export function generateApiKey(): string {
  return `whk_${randomBytes(32).toString('base64url')}`;
}

/** SHA-256 of an API key, hex: what the database stores and looks keys up by. */
export function hashApiKey(apiKey: string): string {
  return createHash('sha256').update(apiKey).digest('hex');
}
