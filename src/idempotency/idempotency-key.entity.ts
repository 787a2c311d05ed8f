import { Column, CreateDateColumn, Entity, PrimaryColumn } from 'typeorm';

/** The first response to a POST carrying an `Idempotency-Key`, kept for 24 h. */
@Entity({ name: 'idempotency_keys' })
export class IdempotencyKey {
  @PrimaryColumn({ name: 'account_id', type: 'text' })
  accountId: string;

  @PrimaryColumn()
  key: string;

  /** SHA-256 of method, path and body: another body under the same key is refused. */
  @Column({ name: 'request_hash' })
  requestHash: string;

  @Column({ name: 'response_status', type: 'int', nullable: true })
  responseStatus: number | null;

  /** The response's JSON text, sealed with `SecretBox` (it can carry secrets). */
  @Column({ name: 'response_body', type: 'text', nullable: true })
  responseBody: string | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
