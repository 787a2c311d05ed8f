import * as dns from 'node:dns';
import type { LookupFunction } from 'node:net';
import { SsrfPolicy } from './ssrf-guard';

/** Raised (as a socket error) when a webhook host resolves to a refused address. */
export class SsrfBlockedError extends Error {
  /** Error code, so callers can tell it from DNS and socket errors. */
  readonly code = 'ESSRFBLOCKED';

  constructor(
    /** Host name that was being connected to. */
    readonly hostname: string,
    /** The refused address. */
    readonly address: string,
    /** Human-readable reason from the policy. */
    readonly reason: string,
  ) {
    // NOTE: the message reaches the tenant (attempt log): where the host points does not.
    super(`Refused to connect to ${hostname}: the destination is not allowed`);
    this.name = 'SsrfBlockedError';
  }
}

/** A resolver with `dns.lookup`'s all-addresses signature; injectable for tests. */
export type AllAddressesResolver = (
  hostname: string,
  options: dns.LookupAllOptions,
  callback: (
    err: NodeJS.ErrnoException | null,
    addresses: dns.LookupAddress[],
  ) => void,
) => void;

/**
 * Creates a `lookup` for `http.Agent`/`https.Agent`/`net.connect` that resolves with
 * `dns.lookup`, checks EVERY resolved address against the policy (so a name with one
 * public and one private address is refused), and only then hands addresses to the
 * socket. Supports callers asking for all addresses (`options.all`, used by Node's
 * happy-eyeballs connect) and for a single one. IP-literal hosts never reach a lookup
 * function in Node, so callers must check those with {@link SsrfPolicy.check} themselves.
 */
export function createGuardedLookup(
  policy: SsrfPolicy,
  resolver: AllAddressesResolver = dns.lookup,
): LookupFunction {
  return (hostname, options, callback) => {
    const failWith = (err: NodeJS.ErrnoException) =>
      callback(err, options?.all ? [] : '', 0);
    const onResolved = (
      err: NodeJS.ErrnoException | null,
      addresses: dns.LookupAddress[],
    ) => {
      if (err) return failWith(err);
      if (!addresses || addresses.length === 0) {
        return failWith(
          Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), {
            code: 'ENOTFOUND',
          }),
        );
      }
      for (const { address } of addresses) {
        const verdict = policy.check(address);
        if (!verdict.allowed) {
          const { display, reason } = verdict;
          return failWith(new SsrfBlockedError(hostname, display, reason));
        }
      }
      if (options?.all) return callback(null, addresses);
      callback(null, addresses[0].address, addresses[0].family);
    };
    try {
      resolver(hostname, { ...options, all: true }, onResolved);
    } catch (err) {
      process.nextTick(failWith, err as NodeJS.ErrnoException);
    }
  };
}
