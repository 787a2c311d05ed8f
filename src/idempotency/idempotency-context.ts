/** The additional data a stored response is sealed with: it opens for this key only. */
export function idempotencyContext(owner: string, key: string): string {
  return `idempotency:${owner}:${key}`;
}
