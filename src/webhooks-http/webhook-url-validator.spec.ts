import { SsrfPolicy } from './ssrf-guard';
import { HostResolver, validateWebhookUrl } from './webhook-url-validator';

const strict = new SsrfPolicy([]);
const neverResolve: HostResolver = async (hostname) => {
  throw new Error(`unexpected DNS lookup of ${hostname}`);
};
const resolvesTo =
  (...addresses: string[]): HostResolver =>
  async () =>
    addresses;

describe('validateWebhookUrl', () => {
  it.each(['http://example.com:0/hook', 'https://example.com:00/hook'])(
    'refuses port 0 in %s',
    async (url) => {
      const result = await validateWebhookUrl(
        url,
        strict,
        resolvesTo('93.184.216.34'),
      );
      expect(result).toEqual({
        ok: false,
        reason: 'URL port must be between 1 and 65535',
      });
    },
  );

  it('refuses a URL longer than 2048 characters once percent-encoded', async () => {
    const url = `http://example.com/${'é'.repeat(2000)}`;
    expect(url.length).toBeLessThanOrEqual(2048);
    const result = await validateWebhookUrl(
      url,
      strict,
      resolvesTo('93.184.216.34'),
    );
    expect(result).toEqual({
      ok: false,
      reason: expect.stringContaining('at most 2048'),
    });
    const fits = `http://example.com/${'é'.repeat(300)}`;
    expect(
      (await validateWebhookUrl(fits, strict, resolvesTo('93.184.216.34'))).ok,
    ).toBe(true);
  });

  it.each([
    ['http://2130706433/', '127.0.0.1, a loopback'],
    ['http://0x7f000001/', '127.0.0.1, a loopback'],
    ['http://127.1/', '127.0.0.1, a loopback'],
    ['http://0177.0.0.1/', '127.0.0.1, a loopback'],
    ['http://127.0.0.1./', '127.0.0.1, a loopback'],
    ['http://0/', '0.0.0.0, an unspecified'],
    ['http://[::1]:8080/hook', '::1, a loopback'],
    [
      'http://[::ffff:127.0.0.1]/',
      '::ffff:7f00:1 (IPv4 127.0.0.1), a loopback',
    ],
    ['http://[::ffff:7f00:1]/', '::ffff:7f00:1 (IPv4 127.0.0.1), a loopback'],
    ['http://169.254.169.254/latest/meta-data/', '169.254.169.254, a cloud'],
    ['http://[fd00:ec2::254]/', 'fd00:ec2::254, a cloud metadata'],
    ['https://100.64.0.1/', '100.64.0.1, a carrier-grade NAT'],
    ['https://10.0.0.1:8443/', '10.0.0.1, a private'],
  ])('refuses the IP-literal URL %s without DNS', async (url, what) => {
    const result = await validateWebhookUrl(url, strict, neverResolve);
    expect(result).toEqual({
      ok: false,
      reason: expect.stringContaining(`URL points to ${what}`),
    });
  });

  it('words the refusal of a typed address without naming server configuration', async () => {
    const result = await validateWebhookUrl('http://2130706433/', strict);
    expect(result).toEqual({
      ok: false,
      reason:
        'URL points to 127.0.0.1, a loopback address; webhook URLs must point to public addresses',
    });
  });

  it('resolves localhost and refuses it without saying where it points', async () => {
    const result = await validateWebhookUrl('http://localhost:3000/x', strict);
    expect(result).toEqual({
      ok: false,
      reason:
        'URL host "localhost" does not resolve to a public address; webhook URLs must point to public addresses',
      detail: expect.stringMatching(
        /^URL host "localhost" resolves to (127\.0\.0\.1|::1), a loopback address$/,
      ),
    });
  });

  it.each(['http://[64:ff9b::7f00:1]/', 'http://[2002:7f00:1::]/'])(
    'refuses %s (IPv6 to a translator) although 127.0.0.0/8 is allow-listed',
    async (url) => {
      const local = new SsrfPolicy(['127.0.0.0/8', '::1/128']);
      const result = await validateWebhookUrl(url, local, neverResolve);
      expect(result).toEqual({
        ok: false,
        reason: expect.stringMatching(
          /\(IPv4 127\.0\.0\.1\), a loopback address/,
        ),
      });
    },
  );

  it('refuses a hostname resolving to a NAT64 form of an allow-listed IPv4', async () => {
    const local = new SsrfPolicy(['127.0.0.0/8']);
    const result = await validateWebhookUrl(
      'http://sneaky.example/',
      local,
      resolvesTo('64:ff9b::7f00:1'),
    );
    expect(result).toMatchObject({ ok: false });
  });

  it('accepts local URLs once their subnets are allow-listed', async () => {
    const local = new SsrfPolicy(['127.0.0.0/8', '::1/128']);
    for (const url of ['http://127.0.0.1:3000/', 'http://localhost:3000/']) {
      const result = await validateWebhookUrl(url, local);
      expect(result).toMatchObject({ ok: true, url: new URL(url) });
    }
  });

  it('accepts a hostname whose every address is public', async () => {
    const result = await validateWebhookUrl(
      'https://hooks.example.com/in?x=1',
      strict,
      resolvesTo('93.184.216.34', '2606:4700::1'),
    );
    expect(result).toEqual({
      ok: true,
      url: new URL('https://hooks.example.com/in?x=1'),
    });
  });

  it('refuses a hostname when any address is not public', async () => {
    const result = await validateWebhookUrl(
      'https://hooks.example.com/',
      strict,
      resolvesTo('93.184.216.34', '10.0.0.5'),
    );
    expect(result).toEqual({
      ok: false,
      reason:
        'URL host "hooks.example.com" does not resolve to a public address; webhook URLs must point to public addresses',
      detail:
        'URL host "hooks.example.com" resolves to 10.0.0.5, a private address',
    });
  });

  it('answers the same for a name that does not resolve as for an internal one', async () => {
    const notFound: HostResolver = async () => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND'), {
        code: 'ENOTFOUND',
      });
    };
    const reasonFor = async (resolver: HostResolver) => {
      const result = await validateWebhookUrl(
        'https://db.internal/',
        strict,
        resolver,
      );
      return result.ok ? 'accepted' : result.reason;
    };
    const reasons = new Set([
      await reasonFor(notFound),
      await reasonFor(resolvesTo()),
      await reasonFor(resolvesTo('10.1.2.3')),
      await reasonFor(resolvesTo('fd00::5')),
    ]);
    expect([...reasons]).toEqual([
      'URL host "db.internal" does not resolve to a public address; webhook URLs must point to public addresses',
    ]);
    await expect(
      validateWebhookUrl('https://nope.invalid/', strict, notFound),
    ).resolves.toMatchObject({
      detail: 'URL host "nope.invalid" could not be resolved (ENOTFOUND)',
    });
    await expect(
      validateWebhookUrl('https://empty.test/', strict, resolvesTo()),
    ).resolves.toMatchObject({
      detail: 'URL host "empty.test" has no addresses',
    });
  });

  it.each([
    ['not a url', 'URL is not a valid absolute URL'],
    ['/relative/path', 'URL is not a valid absolute URL'],
    [
      'ftp://example.com/',
      'URL scheme "ftp" is not allowed; use http or https',
    ],
    [
      'file:///etc/passwd',
      'URL scheme "file" is not allowed; use http or https',
    ],
    [
      'javascript:alert(1)',
      'URL scheme "javascript" is not allowed; use http or https',
    ],
    ['http://user:pw@example.com/', 'URL must not contain credentials'],
    ['https://user@example.com/', 'URL must not contain credentials'],
  ])('refuses %s', async (url, reason) => {
    const result = await validateWebhookUrl(url, strict, neverResolve);
    expect(result).toEqual({
      ok: false,
      reason: expect.stringContaining(reason),
    });
  });
});
