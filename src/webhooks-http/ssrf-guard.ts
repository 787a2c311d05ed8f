import { BlockList, isIP } from 'node:net';
import { parseIp } from './ip-address';
import { SsrfCategory, blockedCategory } from './ssrf-ranges';

/** Outcome of {@link SsrfPolicy.check}. `reason` is a sentence fit for an API error. */
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

/** Tells the operator how to let local endpoints through, appended to every refusal. */
export const SSRF_HINT =
  'webhook URLs must be publicly routable (allow-list with WEBHOOK_ALLOW_SUBNETS for local development)';

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

  /** Decides whether a connection to this IP address is permitted. */
  check(address: string): SsrfCheckResult {
    const ip = parseIp(address);
    if (!ip) {
      const reason = `"${address}" is not an IP address`;
      const display = address;
      return { allowed: false, reason, category: 'invalid', address, display };
    }
    const embedded = ip.embeddedIpv4?.address;
    if (this.allowList.check(ip.address, ip.family)) return { allowed: true };
    if (embedded && this.allowList.check(embedded, 'ipv4')) {
      return { allowed: true };
    }
    const category = embedded
      ? blockedCategory(embedded, 'ipv4')
      : blockedCategory(ip.address, ip.family);
    if (!category) return { allowed: true };
    const display = embedded ? `${ip.address} (IPv4 ${embedded})` : ip.address;
    const reason = `${display} is ${describeCategory(category)}; ${SSRF_HINT}`;
    return { allowed: false, reason, category, address: ip.address, display };
  }
}

/** "a loopback address", "an unspecified address", ... */
export function describeCategory(category: SsrfCategory): string {
  if (category === 'invalid') return 'not an IP address';
  return `${/^[aeiou]/.test(category) ? 'an' : 'a'} ${category} address`;
}
