import { lookup } from 'node:dns/promises';
import { parseIp } from './ip-address';
import { SSRF_HINT, SsrfPolicy, describeCategory } from './ssrf-guard';

/** Resolves a hostname to every IP address it currently has. */
export type HostResolver = (hostname: string) => Promise<string[]>;

/** Outcome of {@link validateWebhookUrl}; `reason` is a sentence fit for an API error. */
export type WebhookUrlValidation =
  | { ok: true; url: URL }
  | { ok: false; reason: string };

/** Resolves with the system resolver (`dns.lookup`, all addresses), like `http` does. */
export const systemResolver: HostResolver = async (hostname) =>
  (await lookup(hostname, { all: true, verbatim: true })).map((a) => a.address);

/**
 * Validates a webhook endpoint URL when it is created or changed: http(s) only, no
 * credentials, a host whose addresses (the literal, or every address it resolves to now)
 * the policy allows. The sender checks again at connect time, so DNS changes are covered.
 */
export async function validateWebhookUrl(
  url: string,
  policy: SsrfPolicy,
  resolve: HostResolver = systemResolver,
): Promise<WebhookUrlValidation> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { ok: false, reason: 'URL is not a valid absolute URL' };
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    const scheme = parsed.protocol.replace(/:$/, '');
    return {
      ok: false,
      reason: `URL scheme "${scheme}" is not allowed; use http or https`,
    };
  }
  if (parsed.username || parsed.password) {
    return {
      ok: false,
      reason:
        'URL must not contain credentials (user:password@); receivers authenticate requests with the webhook signature',
    };
  }
  if (!parsed.hostname) return { ok: false, reason: 'URL must have a host' };

  // WHATWG URL has already turned 2130706433, 0x7f000001, 127.1 etc. into dotted form.
  if (parseIp(parsed.hostname)) {
    const reason = refusal('points to', policy, [parsed.hostname]);
    return reason ? { ok: false, reason } : { ok: true, url: parsed };
  }
  let addresses: string[];
  try {
    addresses = await resolve(parsed.hostname);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'lookup failed';
    return {
      ok: false,
      reason: `URL host "${parsed.hostname}" could not be resolved (${code})`,
    };
  }
  if (addresses.length === 0) {
    return {
      ok: false,
      reason: `URL host "${parsed.hostname}" has no addresses`,
    };
  }
  const reason = refusal('resolves to', policy, addresses);
  return reason ? { ok: false, reason } : { ok: true, url: parsed };
}

function refusal(
  verb: string,
  policy: SsrfPolicy,
  addresses: string[],
): string | undefined {
  for (const address of addresses) {
    const result = policy.check(address);
    if (!result.allowed) {
      const what = describeCategory(result.category);
      return `URL ${verb} ${result.display}, ${what}; ${SSRF_HINT}`;
    }
  }
  return undefined;
}
