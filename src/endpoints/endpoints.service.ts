import {
  ConflictException,
  Inject,
  Injectable,
  Logger,
  NotFoundException,
} from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { TransactionHost } from 'nestjs-transactional-jobs';
import {
  DEFAULT_PAGE_SIZE,
  PageQueryDto,
  decodeTimeCursor,
  positionSql,
  toPage,
} from '../http/pagination';
import { SecretBox } from '../secrets/secret-box';
import { SsrfPolicy } from '../webhooks-http/ssrf-guard';
import { CreateEndpointDto } from './dto/create-endpoint.dto';
import { UpdateEndpointDto } from './dto/update-endpoint.dto';
import { Endpoint } from './endpoint.entity';
import { CHECKED_URLS, checkWebhookUrl } from './webhook-url.pipe';
import {
  currentSecret,
  initialSecrets,
  openSecrets,
  RotationLimitError,
  rotateSecrets,
  sealSecrets,
} from './endpoint-secrets';

/** Endpoint CRUD, always scoped to one account. */
@Injectable()
export class EndpointsService {
  private readonly logger = new Logger(EndpointsService.name);

  constructor(
    private readonly tx: TransactionHost,
    @Inject(SsrfPolicy) private readonly policy: SsrfPolicy,
    private readonly box: SecretBox,
  ) {}

  private get repo() {
    return this.tx.getRepository(Endpoint);
  }

  /**
   * Refuses URLs the SSRF policy does not allow (422). The answer never says where a host
   * points; the log does, with how to allow-list it. NOTE: the controller's `WebhookUrlPipe`
   * checks a request's URL before its transaction opens; this is for URLs it did not check.
   */
  async checkUrl(url: string, accountId: string): Promise<string> {
    return checkWebhookUrl(
      url,
      this.policy,
      this.logger,
      `account ${accountId}`,
    );
  }

  /** The DTO's URL: as `WebhookUrlPipe` checked it, else checked now. */
  private async urlOf(dto: { url?: string }, accountId: string) {
    return CHECKED_URLS.has(dto)
      ? dto.url!
      : this.checkUrl(dto.url!, accountId);
  }

  async create(accountId: string, dto: CreateEndpointDto) {
    const url = await this.urlOf(dto, accountId);
    const secrets = initialSecrets();
    // NOTE: the id is chosen here because the sealed secrets are bound to it.
    const id = randomUUID();
    const endpoint = await this.repo.save(
      this.repo.create({
        id,
        accountId,
        url,
        description: dto.description ?? '',
        eventTypes: dto.eventTypes ?? null,
        secrets: sealSecrets(this.box, id, secrets),
      }),
    );
    return { ...present(endpoint), secret: currentSecret(secrets) };
  }

  /** The account's endpoints, oldest first, one page at a time. */
  async list(accountId: string, page: PageQueryDto) {
    const limit = page.limit ?? DEFAULT_PAGE_SIZE;
    const after = page.cursor ? decodeTimeCursor(page.cursor) : null;
    const rows = await this.repo
      .createQueryBuilder('e')
      .addSelect(positionSql('e.created_at'), 'position')
      .where('e.account_id = :accountId', { accountId })
      .andWhere(
        after ? '(e.created_at, e.id) > (:at::timestamptz, :id::uuid)' : 'TRUE',
        after ?? {},
      )
      .orderBy('e.created_at', 'ASC')
      .addOrderBy('e.id', 'ASC')
      .limit(limit + 1)
      .getRawAndEntities();
    const positions = new Map(
      rows.raw.map((raw: { e_id: string; position: string }) => [
        raw.e_id,
        raw.position,
      ]),
    );
    return toPage(rows.entities, limit, present, (e) => ({
      at: positions.get(e.id)!,
      id: e.id,
    }));
  }

  /** The endpoint, or 404 when it does not exist in this account. */
  async find(accountId: string, id: string, lock = false): Promise<Endpoint> {
    const endpoint = await this.repo.findOne({
      where: { id, accountId },
      ...(lock ? { lock: { mode: 'pessimistic_write' as const } } : {}),
    });
    if (!endpoint) throw new NotFoundException(`Endpoint ${id} not found`);
    return endpoint;
  }

  async get(accountId: string, id: string) {
    return present(await this.find(accountId, id));
  }

  async update(accountId: string, id: string, dto: UpdateEndpointDto) {
    const endpoint = await this.find(accountId, id, true);
    if (dto.url !== undefined) endpoint.url = await this.urlOf(dto, accountId);
    if (dto.description !== undefined)
      endpoint.description = dto.description ?? '';
    if (dto.eventTypes !== undefined) endpoint.eventTypes = dto.eventTypes;
    return present(await this.repo.save(endpoint));
  }

  async remove(accountId: string, id: string): Promise<void> {
    await this.find(accountId, id, true);
    await this.repo.delete({ id, accountId });
  }

  async secret(accountId: string, id: string) {
    await this.find(accountId, id);
    return { secret: currentSecret(await this.secrets(id)) };
  }

  async rotateSecret(accountId: string, id: string) {
    await this.find(accountId, id, true);
    let secrets;
    try {
      secrets = rotateSecrets(await this.secrets(id));
    } catch (error) {
      if (error instanceof RotationLimitError) {
        throw new ConflictException(
          `cannot rotate the secret now: ${error.message}`,
        );
      }
      throw error;
    }
    await this.repo.update(
      { id },
      { secrets: sealSecrets(this.box, id, secrets) },
    );
    return { secret: currentSecret(secrets) };
  }

  async enable(accountId: string, id: string) {
    const endpoint = await this.find(accountId, id, true);
    Object.assign(endpoint, {
      disabled: false,
      disabledReason: null,
      failingSince: null,
    });
    return present(await this.repo.save(endpoint));
  }

  /** The endpoint's secrets, opened. */
  private async secrets(id: string) {
    const row = await this.repo.findOneOrFail({
      where: { id },
      select: { id: true, secrets: true },
    });
    return openSecrets(this.box, id, row.secrets);
  }
}

/** The public shape of an endpoint (never its secrets). */
export function present(endpoint: Endpoint) {
  return {
    id: endpoint.id,
    url: endpoint.url,
    description: endpoint.description,
    eventTypes: endpoint.eventTypes,
    disabled: endpoint.disabled,
    disabledReason: endpoint.disabledReason,
    createdAt: endpoint.createdAt,
    updatedAt: endpoint.updatedAt,
  };
}
