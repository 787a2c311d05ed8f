import { createHmac, randomBytes } from 'node:crypto';

const PREFIX = 'whsec_';

/** Headers of a Standard Webhooks delivery attempt. */
export interface StandardWebhookHeaders extends Record<string, string> {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
  'content-type': string;
}

/** Creates a new signing secret: `whsec_` + base64 of `bytes` random bytes (default 32). */
export function generateSecret(bytes = 32): string {
  return PREFIX + randomBytes(bytes).toString('base64');
}

/** Decodes a `whsec_…` secret into its HMAC key; throws if it is not valid base64. */
export function secretKey(secret: string): Buffer {
  const encoded = secret.startsWith(PREFIX)
    ? secret.slice(PREFIX.length)
    : secret;
  const valid =
    /^[A-Za-z0-9+/]+={0,2}$/.test(encoded) && encoded.length % 4 === 0;
  if (!valid) {
    throw new Error('Webhook secret must be "whsec_" followed by base64');
  }
  return Buffer.from(encoded, 'base64');
}

/**
 * Signs one attempt: `v1,` + base64 HMAC-SHA256 of `msgId.timestamp.body`, keyed with the
 * decoded secret. `timestampSeconds` is Unix time in whole seconds.
 */
export function sign(
  secret: string,
  msgId: string,
  timestampSeconds: number,
  body: string,
): string {
  if (!Number.isInteger(timestampSeconds) || timestampSeconds < 0) {
    throw new Error('timestampSeconds must be a non-negative integer');
  }
  const mac = createHmac('sha256', secretKey(secret))
    .update(`${msgId}.${timestampSeconds}.${body}`, 'utf8')
    .digest('base64');
  return `v1,${mac}`;
}

/**
 * The `webhook-signature` value: one signature per secret, space-separated, so receivers
 * holding any one of the active secrets (key rotation) can verify.
 */
export function signatureHeader(
  secrets: string[],
  msgId: string,
  timestampSeconds: number,
  body: string,
): string {
  if (secrets.length === 0) throw new Error('At least one secret is required');
  return secrets
    .map((secret) => sign(secret, msgId, timestampSeconds, body))
    .join(' ');
}

/**
 * All headers of one delivery attempt. `msgId` stays the same for every attempt of an
 * event; `timestampSeconds` is fresh per attempt (see {@link unixSeconds}).
 */
export function buildHeaders(
  secrets: string[],
  msgId: string,
  timestampSeconds: number,
  body: string,
): StandardWebhookHeaders {
  return {
    'webhook-id': msgId,
    'webhook-timestamp': String(timestampSeconds),
    'webhook-signature': signatureHeader(
      secrets,
      msgId,
      timestampSeconds,
      body,
    ),
    'content-type': 'application/json',
  };
}

/** Unix time in whole seconds, as used by `webhook-timestamp`. */
export function unixSeconds(now: Date | number = Date.now()): number {
  return Math.floor((typeof now === 'number' ? now : now.getTime()) / 1000);
}
