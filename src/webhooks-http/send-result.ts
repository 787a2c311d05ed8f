/** Coarse, stable classification of a failed delivery attempt, for storage and retries. */
export type SendErrorClass =
  | 'timeout'
  | 'ssrf_blocked'
  | 'dns'
  | 'connection_refused'
  | 'connection_reset'
  | 'tls'
  | 'invalid_url'
  | 'network'
  /** Ended by the sender itself (`WebhookSender.abortAll`), e.g. a shutdown that gave up. */
  | 'aborted'
  /** The service could not build the request (nothing was sent). */
  | 'internal';

/** What came back: a response (any status, 3xx included) or a classified error. */
export type SendResult =
  | {
      kind: 'response';
      status: number;
      headers: Record<string, string | string[] | undefined>;
      /** The body, cut to at most `maxResponseBytes` bytes of UTF-8. */
      body: string;
      durationMs: number;
      /** True when the receiver sent more than `maxResponseBytes`. */
      truncated: boolean;
    }
  | {
      kind: 'error';
      errorClass: SendErrorClass;
      message: string;
      durationMs: number;
      /** Set when the status line arrived before the failure (e.g. a trickled body). */
      status?: number;
      /** What only the server log may say (where a refused host resolved to). */
      detail?: string;
    };

const BY_CODE: Record<string, SendErrorClass> = {
  ESSRFBLOCKED: 'ssrf_blocked',
  ETIMEDOUT: 'timeout',
  ENOTFOUND: 'dns',
  ENODATA: 'dns',
  EAI_AGAIN: 'dns',
  EAI_FAIL: 'dns',
  EAI_NODATA: 'dns',
  EAI_NONAME: 'dns',
  ECONNREFUSED: 'connection_refused',
  ECONNRESET: 'connection_reset',
  ECONNABORTED: 'connection_reset',
  EPIPE: 'connection_reset',
  EPROTO: 'tls',
  ERR_INVALID_URL: 'invalid_url',
};

/** OpenSSL verification codes and Node's TLS/SSL error codes. */
const TLS_CODE =
  /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH|INVALID_CA|INVALID_PURPOSE)/;

/**
 * Maps an error from `http`/`https`/`net`/`dns` (or the SSRF guard) to a
 * {@link SendErrorClass}. Unknown errors are `network`.
 */
export function classifySendError(err: unknown): SendErrorClass {
  const code = String((err as NodeJS.ErrnoException | undefined)?.code ?? '');
  if (BY_CODE[code]) return BY_CODE[code];
  if (TLS_CODE.test(code)) return 'tls';
  return 'network';
}

/** A one-line description of an error, with its code when it has one. */
export function describeSendError(err: unknown): string {
  const error = err as NodeJS.ErrnoException | undefined;
  const message = (error?.message || String(err)).trim();
  return error?.code &&
    error.code !== 'ESSRFBLOCKED' &&
    !message.includes(error.code)
    ? `${error.code}: ${message}`
    : message;
}
