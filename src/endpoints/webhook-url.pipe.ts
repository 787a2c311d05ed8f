import {
  Inject,
  Injectable,
  Logger,
  PipeTransform,
  UnprocessableEntityException,
} from '@nestjs/common';
import { SSRF_HINT, SsrfPolicy } from '../webhooks-http/ssrf-guard';
import { validateWebhookUrl } from '../webhooks-http/webhook-url-validator';

/**
 * Checks a webhook URL against the SSRF policy: the normalised URL, or a 422 that never says
 * where the host points (the log does, naming `who` asked, with how to allow-list it).
 */
export async function checkWebhookUrl(
  url: string,
  policy: SsrfPolicy,
  logger: Logger,
  who: string,
): Promise<string> {
  const result = await validateWebhookUrl(url, policy);
  if (!result.ok) {
    if (result.detail) {
      logger.warn(
        `${who}: refused a webhook URL: ${result.detail} (${SSRF_HINT})`,
      );
    }
    throw new UnprocessableEntityException(`url: ${result.reason}`);
  }
  return result.url.toString();
}

/**
 * Endpoint bodies whose `url` this pipe has checked (and normalised): the service takes it as it
 * is and does not resolve the host again.
 */
export const CHECKED_URLS = new WeakSet<object>();

/**
 * Checks the `url` of an endpoint body (`POST /v1/endpoints`, `PATCH /v1/endpoints/:id`) against
 * the SSRF policy before the handler runs, so before its transaction (and, with an
 * `Idempotency-Key`, the key's transaction) opens: resolving the host takes as long as its name
 * server wants, and must not hold a pooled connection or the endpoint's row lock meanwhile.
 */
@Injectable()
export class WebhookUrlPipe implements PipeTransform {
  private readonly logger = new Logger('EndpointsService');

  constructor(@Inject(SsrfPolicy) private readonly policy: SsrfPolicy) {}

  async transform(value: unknown): Promise<unknown> {
    const dto = value as { url?: unknown } | null;
    if (dto && typeof dto === 'object' && typeof dto.url === 'string') {
      dto.url = await checkWebhookUrl(
        dto.url,
        this.policy,
        this.logger,
        'a request',
      );
      CHECKED_URLS.add(dto);
    }
    return value;
  }
}
