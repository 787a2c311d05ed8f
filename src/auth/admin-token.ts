import { timingSafeEqual } from 'crypto';
import type { Request } from 'express';

/**
 * Whether the request carries `Authorization: Bearer <adminToken>` (compared in constant
 * time); false when the server has no admin token. For public routes that show more to the
 * operator than to anyone else (health details).
 */
export function hasAdminToken(
  request: Pick<Request, 'headers'>,
  adminToken: string | undefined,
): boolean {
  const header = request.headers.authorization;
  if (!adminToken || typeof header !== 'string') return false;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) return false;
  const given = Buffer.from(match[1]);
  const expected = Buffer.from(adminToken);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
