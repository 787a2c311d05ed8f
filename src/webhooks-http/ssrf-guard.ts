import { BlockList, isIP } from 'node:net';
import { parseIp } from './ip-address';

/** Why an address is not a valid webhook destination. */
export type SsrfCategory =
  | 'cloud metadata'
  | 'unspecified'
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'carrier-grade NAT'
  | 'multicast'
  | 'broadcast'
  | 'documentation'
  | 'benchmarking'
  | 'reserved'
  | 'invalid';

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

type Family = 'ipv4' | 'ipv6';
type Range = [SsrfCategory, Family, string];

/** Blocked ranges; the first match names the category, so specific ones come first. */
const BLOCKED_RANGES: Range[] = [
  ['cloud metadata', 'ipv4', '169.254.169.254/32'], // AWS, GCP, Azure, OpenStack
  ['cloud metadata', 'ipv4', '100.100.100.200/32'], // Alibaba Cloud
  ['cloud metadata', 'ipv4', '168.63.129.16/32'], // Azure wire server
  ['cloud metadata', 'ipv6', 'fd00:ec2::254/128'], // AWS IMDS over IPv6
  ['unspecified', 'ipv4', '0.0.0.0/8'],
  ['loopback', 'ipv4', '127.0.0.0/8'],
  ['private', 'ipv4', '10.0.0.0/8'],
  ['private', 'ipv4', '172.16.0.0/12'],
  ['private', 'ipv4', '192.168.0.0/16'],
  ['link-local', 'ipv4', '169.254.0.0/16'],
  ['carrier-grade NAT', 'ipv4', '100.64.0.0/10'],
  ['multicast', 'ipv4', '224.0.0.0/4'],
  ['broadcast', 'ipv4', '255.255.255.255/32'],
  ['documentation', 'ipv4', '192.0.2.0/24'],
  ['documentation', 'ipv4', '198.51.100.0/24'],
  ['documentation', 'ipv4', '203.0.113.0/24'],
  ['benchmarking', 'ipv4', '198.18.0.0/15'],
  ['reserved', 'ipv4', '192.0.0.0/24'], // IETF protocol assignments
  ['reserved', 'ipv4', '192.88.99.0/24'], // deprecated 6to4 relay anycast
  ['reserved', 'ipv4', '240.0.0.0/4'],
  ['unspecified', 'ipv6', '::/128'],
  ['loopback', 'ipv6', '::1/128'],
  ['private', 'ipv6', 'fc00::/7'], // unique local
  ['private', 'ipv6', 'fec0::/10'], // deprecated site-local
  ['link-local', 'ipv6', 'fe80::/10'],
  ['multicast', 'ipv6', 'ff00::/8'],
  ['documentation', 'ipv6', '2001:db8::/32'],
  ['documentation', 'ipv6', '3fff::/20'],
  ['benchmarking', 'ipv6', '2001:2::/48'],
  ['reserved', 'ipv6', '2001::/23'], // IETF protocol assignments, incl. Teredo
  ['reserved', 'ipv6', '100::/64'], // discard-only
];

const compiled = BLOCKED_RANGES.map(([category, family, cidr]) => {
  const [network, prefix] = cidr.split('/');
  const list = new BlockList();
  list.addSubnet(network, Number(prefix), family);
  return { category, family, list };
});

/** Only 2000::/3 is allocated global unicast; everything else in IPv6 is refused. */
const globalUnicastV6 = new BlockList();
globalUnicastV6.addSubnet('2000::', 3, 'ipv6');

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
  if (!family || extra !== undefined || !validPrefix || bits > max) {
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
    const [target, family]: [string, Family] = embedded
      ? [embedded, 'ipv4']
      : [ip.address, ip.family];
    const category =
      compiled.find((r) => r.family === family && r.list.check(target, family))
        ?.category ??
      (family === 'ipv6' && !globalUnicastV6.check(target, 'ipv6')
        ? 'reserved'
        : undefined);
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
