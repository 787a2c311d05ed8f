import { timingSafeEqual } from 'crypto';

/**
 * Whether an `Authorization` header carries the admin token: `Bearer <token>` (Prometheus'
 * `authorization` scrape setting, scripts) or `Basic` with the token as the password, any user
 * name (what a browser sends after its login prompt, for the queue dashboard).
 */
export function carriesAdminToken(
  header: string | string[] | undefined,
  adminToken: string | undefined,
): boolean {
  if (!adminToken || typeof header !== 'string') return false;
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (bearer) return same(bearer[1], adminToken);
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!basic) return false;
  const decoded = Buffer.from(basic[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon >= 0 && same(decoded.slice(colon + 1), adminToken);
}

function same(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}
