import { Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { secretContext } from '../endpoints/endpoint-secrets';
import { idempotencyContext } from '../idempotency/idempotency-context';
import { SecretBox, SecretBoxError } from './secret-box';

/** Rows handled per transaction. */
const BATCH = 200;

interface LegacyOrSealed {
  secret?: string;
  sealed?: string;
  createdAt: string;
  expiresAt: string | null;
}

/**
 * At start-up, seals what older versions stored in clear (endpoint secrets, idempotent
 * responses) and re-seals values whose key is no longer the first of
 * `SECRETS_ENCRYPTION_KEYS` (key rotation). Batches of `FOR UPDATE SKIP LOCKED` rows, so
 * that several processes starting at once share the work. A value sealed with a key that is
 * not configured is left as it is and reported.
 */
@Injectable()
export class SecretsSealer implements OnApplicationBootstrap {
  private readonly logger = new Logger(SecretsSealer.name);

  constructor(
    private readonly dataSource: DataSource,
    private readonly box: SecretBox,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const endpoints = await this.sealEndpoints();
    const responses = await this.sealResponses();
    if (endpoints.sealed + responses.sealed > 0) {
      this.logger.log(
        `sealed ${endpoints.sealed} endpoint secret list(s) and ${responses.sealed} ` +
          `idempotent response(s) with key "${this.box.currentKeyId}"`,
      );
    }
    const unopenable = endpoints.unopenable + responses.unopenable;
    if (unopenable > 0) {
      this.logger.warn(
        `${unopenable} sealed value(s) use a key SECRETS_ENCRYPTION_KEYS does not list; ` +
          'they cannot be used until that key is configured again',
      );
    }
  }

  /** Endpoints with a secret in clear or sealed with another key than the current one. */
  async sealEndpoints() {
    const prefix = `v1.${this.box.currentKeyId}.`;
    return this.batches(
      `SELECT id, secrets AS value FROM endpoints
        WHERE id > $1 AND jsonb_path_exists(secrets,
          '$[*] ? (!exists(@.sealed) || !(@.sealed starts with $p))', jsonb_build_object('p', $2::text))
        ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED`,
      ['00000000-0000-0000-0000-000000000000', prefix],
      async (m, id, value: LegacyOrSealed[]) => {
        const context = secretContext(id);
        const secrets = value.map(
          ({ secret, sealed, createdAt, expiresAt }) => ({
            sealed: this.box.seal(
              sealed === undefined ? secret! : this.box.open(sealed, context),
              context,
            ),
            createdAt,
            expiresAt,
          }),
        );
        await m.query('UPDATE endpoints SET secrets = $2 WHERE id = $1', [
          id,
          JSON.stringify(secrets),
        ]);
      },
    );
  }

  /** Stored idempotent responses in clear or sealed with another key. */
  async sealResponses() {
    const prefix = `v1.${this.box.currentKeyId}.`;
    return this.batches(
      `SELECT account_id || ' ' || key AS id, account_id, key, response_body AS value
         FROM idempotency_keys
        WHERE account_id || ' ' || key > $1 AND response_body IS NOT NULL
          AND left(response_body, length($2)) <> $2
        ORDER BY account_id || ' ' || key LIMIT $3 FOR UPDATE SKIP LOCKED`,
      ['', prefix],
      async (m, _id, value: string, row) => {
        const context = idempotencyContext(row.account_id, row.key);
        const text = SecretBox.isSealed(value)
          ? this.box.open(value, context)
          : value;
        await m.query(
          'UPDATE idempotency_keys SET response_body = $3 WHERE account_id = $1 AND key = $2',
          [row.account_id, row.key, this.box.seal(text, context)],
        );
      },
    );
  }

  /** Runs `reseal` on the rows `select` finds, keyset-paginated from `first` by `id`. */
  private async batches<T>(
    select: string,
    [first, ...params]: unknown[],
    reseal: (
      m: EntityManager,
      id: string,
      value: T,
      row: Record<string, string>,
    ) => Promise<void>,
  ): Promise<{ sealed: number; unopenable: number }> {
    let after = first;
    let sealed = 0;
    let unopenable = 0;
    for (;;) {
      const rows: Record<string, any>[] = await this.dataSource.transaction(
        async (m) => {
          const found: Record<string, any>[] = await m.query(select, [
            after,
            ...params,
            BATCH,
          ]);
          for (const row of found) {
            try {
              await reseal(m, row.id, row.value, row);
              sealed++;
            } catch (error) {
              if (!(error instanceof SecretBoxError)) throw error;
              unopenable++;
            }
          }
          return found;
        },
      );
      if (rows.length < BATCH) return { sealed, unopenable };
      after = rows[rows.length - 1].id;
    }
  }
}
