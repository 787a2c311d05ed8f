import { BlockList } from 'node:net';

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

/** Address family, in `net.BlockList` terms. */
export type IpFamily = 'ipv4' | 'ipv6';
type Range = [SsrfCategory, IpFamily, string];

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
 * The category of the first blocked range containing the address (which must be a valid
 * address of that family), or undefined for a public unicast address.
 */
export function blockedCategory(
  address: string,
  family: IpFamily,
): SsrfCategory | undefined {
  const hit = compiled.find(
    (range) => range.family === family && range.list.check(address, family),
  );
  if (hit) return hit.category;
  if (family === 'ipv6' && !globalUnicastV6.check(address, 'ipv6')) {
    return 'reserved';
  }
  return undefined;
}
