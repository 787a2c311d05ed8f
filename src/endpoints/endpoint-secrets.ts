import type { SecretBox } from '../secrets/secret-box';
import { generateSecret } from '../webhooks-http/standard-webhooks-signer';
import type { EndpointSecret, StoredEndpointSecret } from './endpoint.entity';

/** How long a rotated-out secret keeps signing. */
export const ROTATED_SECRET_TTL_MS = 24 * 3600 * 1000;

/**
 * How many rotated-out secrets may sign at once. Every secret rotated out keeps signing for its
 * full 24 h (none is ever dropped early), so a rotation that would need one more is refused
 * until the oldest expires: each adds a signature to every request's `webhook-signature`.
 */
export const MAX_OLD_SECRETS = 50;

/** Why a rotation was refused: the window is full until `retryAt`. */
export class RotationLimitError extends Error {
  constructor(readonly retryAt: Date) {
    super(
      `at most ${MAX_OLD_SECRETS} rotated-out secrets sign at once (each for 24 h); ` +
        `the next rotation is possible at ${retryAt.toISOString()}`,
    );
  }
}

/** A fresh secret list for a new endpoint. */
export function initialSecrets(now = new Date()): EndpointSecret[] {
  return [
    { secret: generateSecret(), createdAt: now.toISOString(), expiresAt: null },
  ];
}

/**
 * Rotation: the current secret expires in 24 h (it still signs until then), a new one becomes
 * current and expired ones are dropped. Throws {@link RotationLimitError} when
 * `MAX_OLD_SECRETS` rotated-out secrets are still signing (none is dropped before its time).
 */
export function rotateSecrets(
  secrets: EndpointSecret[],
  now = new Date(),
): EndpointSecret[] {
  const expiresAt = new Date(
    now.getTime() + ROTATED_SECRET_TTL_MS,
  ).toISOString();
  const active = activeSecrets(secrets, now);
  const rotated = active
    .filter((s) => s.expiresAt !== null)
    .map((s) => new Date(s.expiresAt!).getTime())
    .sort((x, y) => x - y);
  if (rotated.length >= MAX_OLD_SECRETS) {
    // Room for one more once enough of the oldest have expired.
    throw new RotationLimitError(
      new Date(rotated[rotated.length - MAX_OLD_SECRETS]),
    );
  }
  const old = active.map((s) => ({
    ...s,
    expiresAt: s.expiresAt ?? expiresAt,
  }));
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
