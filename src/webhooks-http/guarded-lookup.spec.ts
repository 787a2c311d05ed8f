import type { LookupAddress } from 'node:dns';
import { createServer, connect, LookupFunction, Server } from 'node:net';
import {
  AllAddressesResolver,
  SsrfBlockedError,
  createGuardedLookup,
} from './guarded-lookup';
import { SsrfPolicy } from './ssrf-guard';

const strict = new SsrfPolicy([]);
const fake =
  (...addresses: string[]): AllAddressesResolver =>
  (_hostname, _options, callback) =>
    setImmediate(() =>
      callback(
        null,
        addresses.map((address) => ({
          address,
          family: address.includes(':') ? 6 : 4,
        })),
      ),
    );

function lookupAll(lookup: LookupFunction, hostname: string, all: boolean) {
  return new Promise<{ address: string | LookupAddress[]; family?: number }>(
    (resolve, reject) =>
      lookup(hostname, { all }, (err, address, family) =>
        err ? reject(err) : resolve({ address, family }),
      ),
  );
}

describe('createGuardedLookup', () => {
  it('answers both all-addresses and single-address callers', async () => {
    const lookup = createGuardedLookup(
      strict,
      fake('93.184.216.34', '2606:4700::1'),
    );
    await expect(lookupAll(lookup, 'example.com', true)).resolves.toEqual({
      address: [
        { address: '93.184.216.34', family: 4 },
        { address: '2606:4700::1', family: 6 },
      ],
      family: undefined,
    });
    await expect(lookupAll(lookup, 'example.com', false)).resolves.toEqual({
      address: '93.184.216.34',
      family: 4,
    });
  });

  it.each([true, false])(
    'refuses when any resolved address is blocked (all=%s)',
    async (all) => {
      const lookup = createGuardedLookup(
        strict,
        fake('93.184.216.34', '169.254.169.254'),
      );
      const error = await lookupAll(lookup, 'rebind.example', all).catch(
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(SsrfBlockedError);
      expect(error).toMatchObject({
        code: 'ESSRFBLOCKED',
        hostname: 'rebind.example',
        address: '169.254.169.254',
        reason: expect.stringContaining('a cloud metadata address'),
      });
    },
  );

  it('asks the resolver for every address, keeping the caller options', () => {
    const resolver = jest.fn<void, Parameters<AllAddressesResolver>>();
    createGuardedLookup(strict, resolver)('h.test', { family: 4 }, () => {});
    expect(resolver).toHaveBeenCalledWith(
      'h.test',
      { family: 4, all: true },
      expect.any(Function),
    );
  });

  it('passes DNS errors through and treats no addresses as ENOTFOUND', async () => {
    const enotfound = Object.assign(new Error('getaddrinfo ENOTFOUND x'), {
      code: 'ENOTFOUND',
    });
    const failing: AllAddressesResolver = (_h, _o, callback) =>
      setImmediate(() => callback(enotfound, []));
    await expect(
      lookupAll(createGuardedLookup(strict, failing), 'x', true),
    ).rejects.toBe(enotfound);
    await expect(
      lookupAll(createGuardedLookup(strict, fake()), 'x', false),
    ).rejects.toMatchObject({ code: 'ENOTFOUND' });
    const throwing: AllAddressesResolver = () => {
      throw new TypeError('bad hostname');
    };
    await expect(
      lookupAll(createGuardedLookup(strict, throwing), 'x', true),
    ).rejects.toThrow('bad hostname');
  });

  it('checks real DNS answers: localhost is loopback', async () => {
    const blocked = createGuardedLookup(strict);
    await expect(lookupAll(blocked, 'localhost', true)).rejects.toMatchObject({
      code: 'ESSRFBLOCKED',
    });
    const local = new SsrfPolicy(['127.0.0.0/8', '::1/128']);
    const { address } = await lookupAll(
      createGuardedLookup(local),
      'localhost',
      false,
    );
    expect(['127.0.0.1', '::1']).toContain(address);
  });

  describe('as a socket lookup', () => {
    let server: Server;
    let connections = 0;
    beforeAll(async () => {
      server = createServer((socket) => {
        connections++;
        socket.destroy();
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    });
    afterAll(() => new Promise((r) => server.close(r)));

    it('fails the connect before any packet is sent', async () => {
      const { port } = server.address() as { port: number };
      const socket = connect({
        host: 'localhost',
        port,
        lookup: createGuardedLookup(strict),
      });
      const error = await new Promise((r) => socket.once('error', r));
      expect(error).toBeInstanceOf(SsrfBlockedError);
      await new Promise((r) => setTimeout(r, 50));
      expect(connections).toBe(0);
    });
  });
});
