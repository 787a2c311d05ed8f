import { BlockList, isIP } from 'node:net';
import { parseIp } from './ip-address';
import { SsrfCategory, blockedCategory } from './ssrf-ranges';

/**
 * Outcome of {@link SsrfPolicy.check}. `reason` says what the address is: fine to show for an
 * address the caller typed, not for one a hostname resolved to (log it instead).
 */
export type SsrfCheckResult =
  | { allowed: true }
  | {
      allowed: false;
      reason: string;
      category: SsrfCategory;
      /** The address in canonical form. */
      address: string;
      /** The address for messages, with any tunnelled IPv4 shown too. */
      display: string;
    };

/** Tells the operator how to let local endpoints through: for server logs, never for callers. */
export const SSRF_HINT =
  'allow-list subnets with WEBHOOK_ALLOW_SUBNETS for local development';

/**
 * Parses a comma-separated list of CIDR subnets (the WEBHOOK_ALLOW_SUBNETS format).
 * A bare address counts as a single host. Throws on any malformed entry.
 */
export function parseAllowSubnets(value?: string): string[] {
  if (!value) return [];
  return value
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0)
    .map(normalizeCidr);
}

function normalizeCidr(entry: string): string {
  const [network, prefix, extra] = entry.split('/');
  const family = isIP(network);
  const max = family === 4 ? 32 : 128;
  const bits = prefix === undefined ? max : Number(prefix);
  const validPrefix = prefix === undefined || /^\d{1,3}$/.test(prefix);
  const zoned = network.includes('%');
  if (!family || zoned || extra !== undefined || !validPrefix || bits > max) {
    throw new Error(
      `Invalid WEBHOOK_ALLOW_SUBNETS entry "${entry}": expected a CIDR subnet such as 127.0.0.0/8 or ::1/128, separated by commas`,
    );
  }
  return `${network}/${bits}`;
}

/** Address policy for outbound webhooks: public unicast only, unless allow-listed. */
export class SsrfPolicy {
  private readonly allowList = new BlockList();

  /** @param allowSubnets CIDR subnets that may be reached even though they are not public. */
  constructor(readonly allowSubnets: string[] = []) {
    for (const cidr of allowSubnets.map(normalizeCidr)) {
      const [network, prefix] = cidr.split('/');
      const family = isIP(network) === 4 ? 'ipv4' : 'ipv6';
      this.allowList.addSubnet(network, Number(prefix), family);
    }
  }

  /** Builds a policy from `WEBHOOK_ALLOW_SUBNETS` in the given environment. */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): SsrfPolicy {
    return new SsrfPolicy(parseAllowSubnets(env.WEBHOOK_ALLOW_SUBNETS));
  }

  /**
   * Decides whether a connection to this IP address is permitted. The allow-list is matched
   * against the address the socket connects to: an IPv4-mapped address (`::ffff:a.b.c.d`)
   * is a.b.c.d on the wire, but a NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) address is an
   * IPv6 destination, allowed only if its IPv6 form is listed. The deny ranges still look
   * through all three to the IPv4 address a translator would forward to.
   */
  check(address: string): SsrfCheckResult {
    const ip = parseIp(address);
    if (!ip) {
      const reason = `"${address}" is not an IP address`;
      const display = address;
      return { allowed: false, reason, category: 'invalid', address, display };
    }
    const embedded = ip.embeddedIpv4?.address;
    if (this.allowList.check(ip.address, ip.family)) return { allowed: true };
    if (
      ip.embeddedIpv4?.via === 'ipv4-mapped' &&
      this.allowList.check(ip.embeddedIpv4.address, 'ipv4')
    ) {
      return { allowed: true };
    }
    const category = embedded
      ? blockedCategory(embedded, 'ipv4')
      : blockedCategory(ip.address, ip.family);
    if (!category) return { allowed: true };
    const display = embedded ? `${ip.address} (IPv4 ${embedded})` : ip.address;
    const reason = `${display} is ${describeCategory(category)}`;
    return { allowed: false, reason, category, address: ip.address, display };
  }
}

/** "a loopback address", "an unspecified address", ... */
export function describeCategory(category: SsrfCategory): string {
  if (category === 'invalid') return 'not an IP address';
  return `${/^[aeiou]/.test(category) ? 'an' : 'a'} ${category} address`;
}
