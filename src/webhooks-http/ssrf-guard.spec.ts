import { parseIp } from './ip-address';
import { SsrfPolicy, parseAllowSubnets } from './ssrf-guard';

describe('SsrfPolicy', () => {
  const policy = new SsrfPolicy([]);

  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['::1', 'loopback'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['::', 'unspecified'],
    ['10.0.0.1', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['fec0::1', 'private'],
    ['169.254.1.1', 'link-local'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['100.64.0.1', 'carrier-grade NAT'],
    ['100.127.255.255', 'carrier-grade NAT'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['ff02::1', 'multicast'],
    ['192.0.0.8', 'reserved'],
    ['192.0.2.1', 'documentation'],
    ['198.18.0.1', 'benchmarking'],
    ['198.19.255.255', 'benchmarking'],
    ['198.51.100.7', 'documentation'],
    ['203.0.113.9', 'documentation'],
    ['240.0.0.1', 'reserved'],
    ['255.255.255.255', 'broadcast'],
    ['2001:db8::1', 'documentation'],
    ['100::1', 'reserved'],
    ['2001::1', 'reserved'], // Teredo
    ['::127.0.0.1', 'reserved'], // deprecated IPv4-compatible
    ['::ffff:0:7f00:1', 'reserved'], // IPv4-translated, outside 2000::/3
    ['169.254.169.254', 'cloud metadata'],
    ['fd00:ec2::254', 'cloud metadata'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['0:0:0:0:0:ffff:7f00:1', 'loopback'],
    ['[::ffff:7f00:1]', 'loopback'],
    ['::ffff:169.254.169.254', 'cloud metadata'],
    ['::ffff:10.1.2.3', 'private'],
    ['64:ff9b::7f00:1', 'loopback'], // NAT64 of 127.0.0.1
    ['64:ff9b::10.0.0.1', 'private'],
    ['2002:7f00:1::', 'loopback'], // 6to4 of 127.0.0.1
    ['2002:a9fe:a9fe::1', 'cloud metadata'], // 6to4 of 169.254.169.254
  ])('blocks %s as %s', (address, category) => {
    const result = policy.check(address);
    expect(result).toMatchObject({ allowed: false, category });
    if (!result.allowed) expect(result.reason).not.toContain('WEBHOOK_');
  });

  it.each([
    '93.184.216.34',
    '8.8.8.8',
    '1.1.1.1',
    '11.0.0.1',
    '100.128.0.1',
    '172.32.0.1',
    '192.169.0.1',
    '2606:4700::1',
    '2001:4860:4860::8888',
    '::ffff:93.184.216.34',
    '64:ff9b::5db8:d822', // NAT64 of 93.184.216.34
    '2002:5db8:d822::1', // 6to4 of 93.184.216.34
  ])('allows public %s', (address) => {
    expect(policy.check(address)).toEqual({ allowed: true });
  });

  it('explains refusals in a sentence', () => {
    expect(policy.check('127.0.0.1')).toEqual({
      allowed: false,
      category: 'loopback',
      address: '127.0.0.1',
      display: '127.0.0.1',
      reason: '127.0.0.1 is a loopback address',
    });
    const mapped = policy.check('::FFFF:127.0.0.1');
    expect(mapped).toMatchObject({
      address: '::ffff:7f00:1',
      display: '::ffff:7f00:1 (IPv4 127.0.0.1)',
    });
    expect(policy.check('100.64.0.1')).toMatchObject({
      reason: expect.stringMatching(/^100\.64\.0\.1 is a carrier-grade NAT/),
    });
  });

  it('refuses things that are not IP addresses', () => {
    expect(policy.check('example.com')).toMatchObject({
      allowed: false,
      category: 'invalid',
    });
  });

  it('lets allow-listed subnets through, IPv4-mapped forms included', () => {
    const local = new SsrfPolicy(['127.0.0.0/8', '::1/128']);
    for (const address of ['127.0.0.1', '127.9.9.9', '::1', '::ffff:7f00:1']) {
      expect(local.check(address)).toEqual({ allowed: true });
    }
    expect(local.check('10.0.0.1')).toMatchObject({ allowed: false });
    expect(local.check('169.254.169.254')).toMatchObject({ allowed: false });
  });

  it.each([
    ['64:ff9b::7f00:1', 'NAT64'],
    ['64:ff9b::127.0.0.1', 'NAT64'],
    ['2002:7f00:1::', '6to4'],
    ['2002:7f00:1::1', '6to4'],
  ])(
    'matches the allow-list against %s itself (%s goes out as IPv6), not its IPv4',
    (address) => {
      const local = new SsrfPolicy(['127.0.0.0/8']);
      expect(local.check(address)).toMatchObject({
        allowed: false,
        category: 'loopback',
      });
      const translator = new SsrfPolicy(['64:ff9b::/96', '2002::/16']);
      expect(translator.check(address)).toEqual({ allowed: true });
    },
  );

  it('builds from WEBHOOK_ALLOW_SUBNETS', () => {
    const env = { WEBHOOK_ALLOW_SUBNETS: '10.1.0.0/16' };
    const fromEnv = SsrfPolicy.fromEnv(env);
    expect(fromEnv.check('10.1.2.3')).toEqual({ allowed: true });
    expect(fromEnv.check('10.2.0.1')).toMatchObject({ allowed: false });
    expect(() => SsrfPolicy.fromEnv({ WEBHOOK_ALLOW_SUBNETS: 'x' })).toThrow();
  });
});

describe('parseAllowSubnets', () => {
  it('parses a comma-separated list, tolerating blanks', () => {
    expect(parseAllowSubnets(undefined)).toEqual([]);
    expect(parseAllowSubnets('')).toEqual([]);
    expect(parseAllowSubnets(' 127.0.0.0/8 , ::1/128 ,')).toEqual([
      '127.0.0.0/8',
      '::1/128',
    ]);
  });

  it('reads a bare address as a single host', () => {
    expect(parseAllowSubnets('10.0.0.7,fd00::7')).toEqual([
      '10.0.0.7/32',
      'fd00::7/128',
    ]);
  });

  it.each([
    '127.0.0.0/33',
    '::1/129',
    'localhost/8',
    '10.0.0.0/',
    '10.0.0.0/-1',
    '10.0.0.0/8x',
    '10.0.0.0/8/1',
    '10.0.0/8',
    'fe80::1%eth0/64',
  ])('throws a clear error for %s', (value) => {
    expect(() => parseAllowSubnets(`127.0.0.0/8,${value}`)).toThrow(
      `Invalid WEBHOOK_ALLOW_SUBNETS entry "${value}"`,
    );
  });
});

describe('parseIp', () => {
  it('canonicalises and unwraps', () => {
    expect(parseIp('[0:0:0:0:0:FFFF:7F00:0001]')).toEqual({
      family: 'ipv6',
      address: '::ffff:7f00:1',
      embeddedIpv4: { address: '127.0.0.1', via: 'ipv4-mapped' },
    });
    expect(parseIp('64:ff9b::a00:1')?.embeddedIpv4).toEqual({
      address: '10.0.0.1',
      via: 'nat64',
    });
    expect(parseIp('2002:c0a8:101::')?.embeddedIpv4).toEqual({
      address: '192.168.1.1',
      via: '6to4',
    });
    expect(parseIp('2606:4700::1')).toEqual({
      family: 'ipv6',
      address: '2606:4700::1',
    });
    expect(parseIp('localhost')).toBeNull();
    expect(parseIp('127.1')).toBeNull();
  });
});
