import {
  IncomingMessage,
  RequestListener,
  Server,
  ServerResponse,
  createServer,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { SsrfPolicy } from './ssrf-guard';
import { WebhookSender, WebhookSenderOptions } from './webhook-sender';

interface TestServer {
  url: string;
  port: number;
  connections: number;
  requests: { req: IncomingMessage; body: string }[];
  close(): Promise<void>;
}

const servers: TestServer[] = [];
const senders: WebhookSender[] = [];

async function startServer(
  handler: (req: IncomingMessage, res: ServerResponse, body: string) => void,
): Promise<TestServer> {
  const listener: RequestListener = (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      state.requests.push({ req, body });
      handler(req, res, body);
    });
  };
  const server: Server = createServer(listener);
  server.on('connection', () => state.connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const state: TestServer = {
    url: `http://127.0.0.1:${port}/hook`,
    port,
    connections: 0,
    requests: [],
    close: () => {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
  servers.push(state);
  return state;
}

const local = new SsrfPolicy(['127.0.0.0/8', '::1/128']);
function sender(options: Partial<WebhookSenderOptions> = {}) {
  const created = new WebhookSender({ policy: local, ...options });
  senders.push(created);
  return created;
}
const post = (url: string, body = '{"a":1}') => ({
  url,
  body,
  headers: { 'content-type': 'application/json', 'webhook-id': 'msg_1' },
});

afterEach(async () => {
  senders.splice(0).forEach((s) => s.close());
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('WebhookSender', () => {
  it('POSTs the body and headers and returns the response', async () => {
    const server = await startServer((_req, res) => {
      res.setHeader('x-receiver', 'yes');
      res.end('thanks');
    });
    const result = await sender().send(post(server.url));
    expect(result).toEqual({
      kind: 'response',
      status: 200,
      headers: expect.objectContaining({ 'x-receiver': 'yes' }),
      body: 'thanks',
      durationMs: expect.any(Number),
      truncated: false,
    });
    const [{ req, body }] = server.requests;
    expect(req.method).toBe('POST');
    expect(req.url).toBe('/hook');
    expect(body).toBe('{"a":1}');
    expect(req.headers).toMatchObject({
      'content-type': 'application/json',
      'content-length': '7',
      'webhook-id': 'msg_1',
      'user-agent': 'transactional-webhooks/0.1',
    });
  });

  it('returns 3xx as a response and never follows the redirect', async () => {
    const target = await startServer((_req, res) => res.end('moved here'));
    const redirecting = await startServer((_req, res) => {
      res.writeHead(307, { location: target.url }).end();
    });
    const result = await sender().send(post(redirecting.url));
    expect(result).toMatchObject({ kind: 'response', status: 307 });
    expect(result.kind === 'response' && result.headers.location).toBe(
      target.url,
    );
    expect(target.connections).toBe(0);
  });

  it('times out a receiver that does not answer', async () => {
    const server = await startServer(() => undefined);
    const result = await sender({ timeoutMs: 300 }).send(post(server.url));
    expect(result).toMatchObject({ kind: 'error', errorClass: 'timeout' });
    expect(result.durationMs).toBeGreaterThanOrEqual(290);
    expect(result.durationMs).toBeLessThan(2_000);
  });

  it('ends the exchanges in flight as aborted attempts on abortAll', async () => {
    const server = await startServer(() => undefined);
    const webhooks = sender({ timeoutMs: 10_000 });
    const sending = webhooks.send(post(server.url));
    while (server.requests.length === 0) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    webhooks.abortAll('the worker stopped');
    const result = await sending;
    expect(result).toMatchObject({
      kind: 'error',
      errorClass: 'aborted',
      message: 'the worker stopped',
    });
    expect(result.durationMs).toBeLessThan(2_000);
  });

  it('refuses every send after abortAll, without a request', async () => {
    const server = await startServer((_req, res) => res.end('ok'));
    const webhooks = sender({ timeoutMs: 10_000 });
    webhooks.abortAll('the worker stopped');
    const result = await webhooks.send(post(server.url));
    expect(result).toMatchObject({
      kind: 'error',
      errorClass: 'aborted',
      message: 'the worker stopped; this attempt was not sent',
    });
    expect(server.requests).toHaveLength(0);
  });

  it('times out a trickled body even after the status line', async () => {
    const server = await startServer((_req, res) => {
      res.writeHead(200);
      const timer = setInterval(() => res.write('.'), 20);
      res.on('close', () => clearInterval(timer));
    });
    const result = await sender({ timeoutMs: 300 }).send(post(server.url));
    expect(result).toMatchObject({
      kind: 'error',
      errorClass: 'timeout',
      status: 200,
    });
    expect(result.durationMs).toBeLessThan(2_000);
  });

  it('cuts an endless body at the byte cap', async () => {
    const server = await startServer((_req, res) => {
      res.writeHead(200);
      const chunk = 'x'.repeat(16 * 1024);
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
      };
      res.on('drain', pump);
      pump();
    });
    const result = await sender({ maxResponseBytes: 1000 }).send(
      post(server.url),
    );
    expect(result).toMatchObject({ kind: 'response', truncated: true });
    expect(result.kind === 'response' && result.body.length).toBe(1000);
  });

  it('keeps a body of exactly the cap, and never splits a character', async () => {
    const exact = await startServer((_req, res) => res.end('y'.repeat(1000)));
    const capped = sender({ maxResponseBytes: 1000 });
    expect(await capped.send(post(exact.url))).toMatchObject({
      truncated: false,
      body: 'y'.repeat(1000),
    });
    const multibyte = await startServer((_req, res) =>
      res.end('é'.repeat(600)),
    );
    const result = await sender({ maxResponseBytes: 1001 }).send(
      post(multibyte.url),
    );
    expect(result).toMatchObject({ truncated: true, body: 'é'.repeat(500) });
  });

  it('classifies refused, reset and TLS failures', async () => {
    const closed = await startServer(() => undefined);
    await closed.close();
    const send = sender();
    expect(await send.send(post(closed.url))).toMatchObject({
      kind: 'error',
      errorClass: 'connection_refused',
    });
    const resetting = await startServer((req) => req.socket.destroy());
    expect(await send.send(post(resetting.url))).toMatchObject({
      errorClass: 'connection_reset',
    });
    const plain = await startServer((_req, res) => res.end());
    const https = plain.url.replace('http:', 'https:');
    expect(await send.send(post(https))).toMatchObject({ errorClass: 'tls' });
  });

  it('refuses a loopback literal that is not allow-listed, sending nothing', async () => {
    const server = await startServer((_req, res) => res.end());
    const result = await sender({ policy: new SsrfPolicy([]) }).send(
      post(server.url),
    );
    expect(result).toMatchObject({
      kind: 'error',
      errorClass: 'ssrf_blocked',
      message: expect.stringContaining('127.0.0.1 is a loopback address'),
    });
    for (const host of ['[::ffff:7f00:1]', '2130706433', '[::1]']) {
      const url = `http://${host}:${server.port}/hook`;
      const blocked = await sender({ policy: new SsrfPolicy([]) }).send(
        post(url),
      );
      expect(blocked).toMatchObject({ errorClass: 'ssrf_blocked' });
    }
    expect(server.connections).toBe(0);
  });

  it('refuses localhost at connect time, sending nothing', async () => {
    const server = await startServer((_req, res) => res.end());
    const url = `http://localhost:${server.port}/hook`;
    const result = await sender({ policy: new SsrfPolicy([]) }).send(post(url));
    expect(result).toMatchObject({
      kind: 'error',
      errorClass: 'ssrf_blocked',
      message:
        'Refused to connect to localhost: the destination is not allowed',
      detail: expect.stringMatching(
        /^localhost resolves to an address refused: (127\.0\.0\.1|::1) is a loopback address$/,
      ),
    });
    expect(server.connections).toBe(0);
  });

  it('connects to the address the guarded lookup checked', async () => {
    const server = await startServer((_req, res) => res.end('ok'));
    const resolver: WebhookSenderOptions['resolver'] = (_h, _o, callback) =>
      callback(null, [{ address: '127.0.0.1', family: 4 }]);
    const url = `http://hooks.example.test:${server.port}/hook`;
    expect(await sender({ resolver }).send(post(url))).toMatchObject({
      kind: 'response',
      body: 'ok',
    });
    expect(server.requests[0].req.headers.host).toBe(
      `hooks.example.test:${server.port}`,
    );
    const strict = sender({ resolver, policy: new SsrfPolicy([]) });
    expect(await strict.send(post(url))).toMatchObject({
      errorClass: 'ssrf_blocked',
    });
    expect(server.connections).toBe(1);
  });

  it('ignores HTTP_PROXY and reuses kept-alive connections', async () => {
    const proxy = await startServer((_req, res) => res.end('proxied'));
    const server = await startServer((_req, res) => res.end('direct'));
    const saved = { ...process.env };
    Object.assign(process.env, {
      HTTP_PROXY: proxy.url,
      http_proxy: proxy.url,
      NODE_USE_ENV_PROXY: '1',
    });
    try {
      const send = sender();
      expect(await send.send(post(server.url))).toMatchObject({
        body: 'direct',
      });
      expect(await send.send(post(server.url))).toMatchObject({
        body: 'direct',
      });
    } finally {
      process.env = saved;
    }
    expect(proxy.connections).toBe(0);
    expect(server.connections).toBe(1);
  });

  it.each(['ftp://127.0.0.1/x', 'not a url', 'http://u:p@127.0.0.1/'])(
    'rejects %s as invalid_url',
    async (url) => {
      expect(await sender().send(post(url))).toMatchObject({
        kind: 'error',
        errorClass: 'invalid_url',
      });
    },
  );
});
