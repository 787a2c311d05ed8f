import { lookup } from 'node:dns/promises';
import { parseIp } from './ip-address';
import { SsrfPolicy, describeCategory } from './ssrf-guard';

/** Resolves a hostname to every IP address it currently has. */
export type HostResolver = (hostname: string) => Promise<string[]>;

/**
 * Outcome of {@link validateWebhookUrl}. `reason` is a sentence fit for an API error: it
 * never says what a hostname resolves to (a tenant could map internal DNS with it);
 * `detail` does, for the server log.
 */
export type WebhookUrlValidation =
  | { ok: true; url: URL }
  | { ok: false; reason: string; detail?: string };

/** Longest URL stored, counted after WHATWG normalisation (percent-encoding can grow it). */
export const MAX_WEBHOOK_URL_LENGTH = 2048;

/** Appended to refusals of non-public destinations. */
const PUBLIC_ONLY = 'webhook URLs must point to public addresses';

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
  // NOTE: WHATWG URL drops a default port and refuses ports above 65535, but keeps port 0.
  if (parsed.port !== '') {
    const port = Number(parsed.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      return { ok: false, reason: 'URL port must be between 1 and 65535' };
    }
  }
  if (parsed.href.length > MAX_WEBHOOK_URL_LENGTH) {
    return {
      ok: false,
      reason:
        `URL is ${parsed.href.length} characters long once normalised (non-ASCII characters ` +
        `are percent-encoded); at most ${MAX_WEBHOOK_URL_LENGTH} are allowed`,
    };
  }

  // WHATWG URL has already turned 2130706433, 0x7f000001, 127.1 etc. into dotted form.
  if (parseIp(parsed.hostname)) {
    // The caller typed this address: saying what it is tells them nothing new.
    const refused = refusal(policy, [parsed.hostname]);
    return refused
      ? { ok: false, reason: `URL points to ${refused}; ${PUBLIC_ONLY}` }
      : { ok: true, url: parsed };
  }
  // NOTE: from here on every refusal reads the same: whether a name does not resolve or
  // resolves to an internal address is for the server log only.
  const refuse = (detail: string): WebhookUrlValidation => ({
    ok: false,
    reason: `URL host "${parsed.hostname}" does not resolve to a public address; ${PUBLIC_ONLY}`,
    detail: `URL host "${parsed.hostname}" ${detail}`,
  });
  let addresses: string[];
  try {
    addresses = await resolve(parsed.hostname);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'lookup failed';
    return refuse(`could not be resolved (${code})`);
  }
  if (addresses.length === 0) return refuse('has no addresses');
  const refused = refusal(policy, addresses);
  return refused ? refuse(`resolves to ${refused}`) : { ok: true, url: parsed };
}

/** "10.0.0.5, a private address" for the first address the policy refuses, if any. */
function refusal(policy: SsrfPolicy, addresses: string[]): string | undefined {
  for (const address of addresses) {
    const result = policy.check(address);
    if (!result.allowed) {
      return `${result.display}, ${describeCategory(result.category)}`;
    }
  }
  return undefined;
}
