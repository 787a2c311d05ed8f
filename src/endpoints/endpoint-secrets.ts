import type { SecretBox } from '../secrets/secret-box';
import { generateSecret } from '../webhooks-http/standard-webhooks-signer';
import type { EndpointSecret, StoredEndpointSecret } from './endpoint.entity';

/** How long a rotated-out secret keeps signing. */
export const ROTATED_SECRET_TTL_MS = 24 * 3600 * 1000;

/** How many rotated-out secrets are kept at most. */
export const MAX_OLD_SECRETS = 10;

/** A fresh secret list for a new endpoint. */
export function initialSecrets(now = new Date()): EndpointSecret[] {
  return [
    { secret: generateSecret(), createdAt: now.toISOString(), expiresAt: null },
  ];
}

/**
 * Rotation: the current secret expires in 24 h (it still signs until then), a new one becomes
 * current, expired ones are dropped and at most `MAX_OLD_SECRETS` old ones are kept.
 */
export function rotateSecrets(
  secrets: EndpointSecret[],
  now = new Date(),
): EndpointSecret[] {
  const expiresAt = new Date(
    now.getTime() + ROTATED_SECRET_TTL_MS,
  ).toISOString();
  const old = activeSecrets(secrets, now)
    .map((s) => ({ ...s, expiresAt: s.expiresAt ?? expiresAt }))
    .slice(-MAX_OLD_SECRETS);
  return [
    ...old,
    { secret: generateSecret(), createdAt: now.toISOString(), expiresAt: null },
  ];
}

/** Secrets that still sign: the current one and rotated ones not yet expired. */
export function activeSecrets(
  secrets: EndpointSecret[],
  now = new Date(),
): EndpointSecret[] {
  return secrets.filter(
    (s) => s.expiresAt === null || new Date(s.expiresAt) > now,
  );
}

/** The current secret (the one without an expiry). */
export function currentSecret(secrets: EndpointSecret[]): string {
  const current = secrets.find((s) => s.expiresAt === null);
  if (!current) throw new Error('endpoint has no current secret');
  return current.secret;
}

/** The additional data a secret of this endpoint is sealed with: it opens on no other row. */
export function secretContext(endpointId: string): string {
  return `endpoint:${endpointId}:secret`;
}

/** Seals an endpoint's secrets for storage. */
export function sealSecrets(
  box: SecretBox,
  endpointId: string,
  secrets: EndpointSecret[],
): StoredEndpointSecret[] {
  return secrets.map(({ secret, createdAt, expiresAt }) => ({
    sealed: box.seal(secret, secretContext(endpointId)),
    createdAt,
    expiresAt,
  }));
}

/** Opens an endpoint's stored secrets; throws `SecretBoxError` when a key is missing. */
export function openSecrets(
  box: SecretBox,
  endpointId: string,
  stored: StoredEndpointSecret[],
): EndpointSecret[] {
  return stored.map(({ sealed, createdAt, expiresAt }) => ({
    secret: box.open(sealed, secretContext(endpointId)),
    createdAt,
    expiresAt,
  }));
}
