import * as http from 'node:http';
import * as https from 'node:https';
import { performance } from 'node:perf_hooks';
import { readCappedBody } from './capped-body';
import {
  AllAddressesResolver,
  SsrfBlockedError,
  createGuardedLookup,
} from './guarded-lookup';
import { parseIp } from './ip-address';
import {
  SendErrorClass,
  SendResult,
  classifySendError,
  describeSendError,
} from './send-result';
import { SsrfPolicy } from './ssrf-guard';

/** One outbound webhook POST. */
export interface WebhookRequest {
  url: string;
  headers: Record<string, string>;
  body: string;
}

/** Settings for {@link WebhookSender}. */
export interface WebhookSenderOptions {
  policy: SsrfPolicy;
  /** Budget for the whole exchange: connect, request, headers and body. Default 15000. */
  timeoutMs?: number;
  /** Response bytes kept; the connection is dropped beyond that. Default 64 KiB. */
  maxResponseBytes?: number;
  userAgent?: string;
  /** DNS resolver used by the guarded lookup; defaults to `dns.lookup`. */
  resolver?: AllAddressesResolver;
  /** Extra TLS settings (e.g. a test CA). */
  tls?: Pick<https.AgentOptions, 'ca' | 'rejectUnauthorized'>;
}

/**
 * Sends webhook POSTs with node's http/https through its own keep-alive agents whose
 * lookup enforces the SSRF policy at connect time. Never follows redirects, never uses
 * a proxy, never throws: every failure becomes a `kind: 'error'` result.
 */
export class WebhookSender {
  private readonly timeoutMs: number;
  private readonly maxResponseBytes: number;
  private readonly userAgent: string;
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;
  /** How to end each exchange in flight (see `abortAll`). */
  private readonly inFlight = new Set<(message: string) => void>();
  /** Set by `abortAll`: why every later send is refused. */
  private aborted: string | undefined;

  constructor(private readonly options: WebhookSenderOptions) {
    this.timeoutMs = options.timeoutMs ?? 15_000;
    this.maxResponseBytes = options.maxResponseBytes ?? 64 * 1024;
    this.userAgent = options.userAgent ?? 'transactional-webhooks/0.1';
    const lookup = createGuardedLookup(options.policy, options.resolver);
    // `timeout` only bounds idle pooled sockets; the exchange has its own timer.
    const agent = { keepAlive: true, timeout: 4_000, lookup };
    this.httpAgent = new http.Agent(agent);
    this.httpsAgent = new https.Agent({ ...agent, ...options.tls });
  }

  /** Sends one request; resolves with the response or a classified error. */
  send(request: WebhookRequest): Promise<SendResult> {
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    const fail = (errorClass: SendErrorClass, message: string) =>
      Promise.resolve<SendResult>({
        kind: 'error',
        errorClass,
        message,
        durationMs: elapsed(),
      });
    if (this.aborted !== undefined) {
      return fail('aborted', `${this.aborted}; this attempt was not sent`);
    }
    let url: URL;
    try {
      url = new URL(request.url);
    } catch {
      return fail('invalid_url', `invalid URL: ${request.url}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      return fail('invalid_url', `unsupported scheme ${url.protocol}`);
    }
    if (url.username || url.password) {
      return fail('invalid_url', 'URL must not contain credentials');
    }
    // Node skips `lookup` for IP-literal hosts, so those are checked here.
    const literal = parseIp(url.hostname);
    const verdict = literal && this.options.policy.check(literal.address);
    if (verdict && !verdict.allowed) {
      return fail(
        'ssrf_blocked',
        `the destination is not allowed (${verdict.reason})`,
      );
    }
    return new Promise((resolve) =>
      this.exchange(url, request, elapsed, resolve),
    );
  }

  /**
   * Ends every exchange in flight at once: each resolves as a `kind: 'error'` result of class
   * `aborted` with `message`. For a shutdown that cannot wait for them any longer: every
   * later send resolves the same way at once, without a request (e.g. a delivery a worker
   * claimed before it was told to stop).
   */
  abortAll(message: string): void {
    this.aborted = message;
    for (const abort of [...this.inFlight]) abort(message);
  }

  /** Closes pooled connections. The sender must not be used afterwards. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  private exchange(
    url: URL,
    request: WebhookRequest,
    elapsed: () => number,
    resolve: (result: SendResult) => void,
  ): void {
    let settled = false;
    let status: number | undefined;
    let req: http.ClientRequest | undefined;
    /** The response, once its head arrived. */
    let response: http.IncomingMessage | undefined;
    const finish = (result: SendResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      this.inFlight.delete(abort);
      resolve(result);
    };
    const fail = (
      errorClass: SendErrorClass,
      message: string,
      detail?: string,
    ) =>
      finish({
        kind: 'error',
        errorClass,
        message,
        durationMs: elapsed(),
        ...(status === undefined ? {} : { status }),
        ...(detail === undefined ? {} : { detail }),
      });
    const failWith = (err: unknown) =>
      fail(
        classifySendError(err),
        describeSendError(err),
        err instanceof SsrfBlockedError
          ? `${err.hostname} resolves to an address refused: ${err.reason}`
          : undefined,
      );
    const abort = (message: string) => {
      fail('aborted', message);
      req?.destroy();
    };
    this.inFlight.add(abort);
    const timer = setTimeout(() => {
      const during =
        status === undefined ? '' : ` (status ${status}, body unfinished)`;
      fail(
        'timeout',
        `no complete response within ${this.timeoutMs} ms${during}`,
      );
      req?.destroy();
    }, this.timeoutMs);
    const transport = url.protocol === 'https:' ? https : http;
    const agent = url.protocol === 'https:' ? this.httpsAgent : this.httpAgent;
    try {
      req = transport.request(url, {
        method: 'POST',
        agent,
        headers: {
          'user-agent': this.userAgent,
          ...request.headers,
          'content-length': Buffer.byteLength(request.body),
        },
      });
    } catch (err) {
      return failWith(err);
    }
    // NOTE: bytes after a complete response (a Content-Length too short, a 204 with content,
    // junk after `Connection: close`) fail the parser of the connection, not the exchange: the
    // answer is complete and its 'end' follows on the next tick.
    req.on('error', (err) => {
      if (response?.complete) return;
      failWith(err);
    });
    req.on('response', (res) => {
      response = res;
      const code = (status = res.statusCode ?? 0);
      const { headers } = res;
      readCappedBody(res, this.maxResponseBytes).then(
        ({ body, truncated }) =>
          finish({
            kind: 'response',
            status: code,
            headers,
            body,
            durationMs: elapsed(),
            truncated,
          }),
        failWith,
      );
    });
    req.end(request.body);
  }
}
