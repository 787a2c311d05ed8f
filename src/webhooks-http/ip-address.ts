import { isIP } from 'node:net';

/** How an IPv6 address carries an IPv4 address that the packet is really headed for. */
export type Ipv4Tunnel = 'ipv4-mapped' | 'nat64' | '6to4';

/** An IP address literal, parsed into family, canonical text and any IPv4 it tunnels. */
export interface ParsedIp {
  family: 'ipv4' | 'ipv6';
  /** Canonical text: dotted IPv4, or compressed lower-case IPv6 without zone id. */
  address: string;
  /** The IPv4 address embedded in an IPv4-mapped, NAT64 or 6to4 IPv6 address. */
  embeddedIpv4?: { address: string; via: Ipv4Tunnel };
}

/**
 * Parses an IP address literal (IPv4 dotted, or IPv6 with optional brackets and zone id).
 * Returns null for anything that is not an IP literal, such as a hostname.
 */
export function parseIp(input: string): ParsedIp | null {
  const text = input.trim().replace(/^\[(.*)\]$/, '$1');
  const family = isIP(text);
  if (family === 4) return { family: 'ipv4', address: text };
  if (family !== 6) return null;
  const withoutZone = text.replace(/%.*$/, '');
  const groups = ipv6Groups(withoutZone);
  if (!groups) return null;
  const parsed: ParsedIp = {
    family: 'ipv6',
    address: new URL(`http://[${withoutZone}]/`).hostname.slice(1, -1),
  };
  const tunnel = embeddedIpv4(groups);
  if (tunnel) parsed.embeddedIpv4 = tunnel;
  return parsed;
}

/** Expands an IPv6 address into its eight 16-bit groups. */
function ipv6Groups(address: string): number[] | null {
  let text = address.toLowerCase();
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number);
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const rest = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const missing = 8 - head.length - rest.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) return null;
  const groups = [...head, ...Array<string>(missing).fill('0'), ...rest].map(
    (group) => parseInt(group, 16),
  );
  return groups.every((g) => g >= 0 && g <= 0xffff) ? groups : null;
}

function embeddedIpv4(g: number[]): ParsedIp['embeddedIpv4'] | undefined {
  const zeros = (from: number, to: number) =>
    g.slice(from, to).every((group) => group === 0);
  if (zeros(0, 5) && g[5] === 0xffff) {
    return { address: dotted(g[6], g[7]), via: 'ipv4-mapped' };
  }
  if (g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6)) {
    return { address: dotted(g[6], g[7]), via: 'nat64' };
  }
  if (g[0] === 0x2002) return { address: dotted(g[1], g[2]), via: '6to4' };
  return undefined;
}

function dotted(high: number, low: number): string {
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
}
