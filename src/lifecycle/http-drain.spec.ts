import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpDrain } from './http-drain';

interface Answer {
  status: number;
  connection?: string;
  body: string;
}

/** A loopback server whose `/slow` requests wait for `release()`, with its drain. */
async function startServer() {
  const waiting: (() => void)[] = [];
  let received = 0;
  const server = http.createServer((req, res) => {
    received++;
    if (req.url === '/slow') waiting.push(() => res.end('slow'));
    else res.end('fast');
  });
  const drain = new HttpDrain(server);
  await new Promise<void>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve()),
  );
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    drain,
    port,
    received: () => received,
    release: () => waiting.splice(0).forEach((answer) => answer()),
  };
}

/** A GET through `agent`; rejects with the socket error (e.g. ECONNREFUSED, ECONNRESET). */
function get(port: number, path: string, agent: http.Agent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { port, host: '127.0.0.1', path, agent },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            connection: res.headers.connection,
            body,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Resolves with the time `promise` took, or rejects after `ms`. */
async function within(promise: Promise<unknown>, ms: number): Promise<number> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`not within ${ms} ms`)), ms);
    }),
  ]);
  clearTimeout(timer);
  return Date.now() - started;
}

describe('HttpDrain', () => {
  let agent: http.Agent;
  let ctx: Awaited<ReturnType<typeof startServer>>;

  beforeEach(async () => {
    agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    ctx = await startServer();
  });

  afterEach(() => {
    agent.destroy();
    ctx.release();
    ctx.server.closeAllConnections();
    ctx.server.close();
  });

  describe('when a request is in flight at the stop', () => {
    it('should refuse new connections, answer it with Connection: close, and close once it is answered', async () => {
      const slow = get(ctx.port, '/slow', agent);
      while (ctx.received() === 0) await new Promise((r) => setTimeout(r, 5));

      const closed = ctx.drain.stopAccepting();
      expect(ctx.drain.requestsInFlight).toBe(1);
      await expect(
        get(ctx.port, '/', new http.Agent({ keepAlive: false })),
      ).rejects.toMatchObject({ code: 'ECONNREFUSED' });
      ctx.release();

      expect(await slow).toEqual({
        status: 200,
        connection: 'close',
        body: 'slow',
      });
      // Well before the keep-alive timeout (5 s) that would otherwise hold the connection.
      expect(await within(closed, 2_000)).toBeLessThan(1_000);
    });
  });

  describe('when a kept-alive connection is idle at the stop', () => {
    it('should still answer a request the client sends on it, then close it', async () => {
      expect(await get(ctx.port, '/', agent)).toMatchObject({
        connection: 'keep-alive',
      });

      const closed = ctx.drain.stopAccepting();
      // The agent reuses its pooled connection: no reset, an answer that closes it.
      expect(await get(ctx.port, '/', agent)).toEqual({
        status: 200,
        connection: 'close',
        body: 'fast',
      });
      await within(closed, 2_000);
      await expect(get(ctx.port, '/', agent)).rejects.toMatchObject({
        code: 'ECONNREFUSED',
      });
    });

    it('should close it once nothing is in flight', async () => {
      await get(ctx.port, '/', agent);
      expect(await within(ctx.drain.stopAccepting(), 2_000)).toBeLessThan(
        1_000,
      );
    });
  });
});
