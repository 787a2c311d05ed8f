import {
  Column,
  CreateDateColumn,
  Entity,
  PrimaryGeneratedColumn,
  UpdateDateColumn,
} from 'typeorm';

/** One signing secret of an endpoint, in memory; rotated ones keep signing until `expiresAt`. */
export interface EndpointSecret {
  secret: string;
  createdAt: string;
  expiresAt: string | null;
}

/** An {@link EndpointSecret} as stored: the secret sealed with `SecretBox` (AES-256-GCM). */
export interface StoredEndpointSecret {
  sealed: string;
  createdAt: string;
  expiresAt: string | null;
}

/** A customer's webhook URL and what it subscribes to. */
@Entity({ name: 'endpoints' })
export class Endpoint {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column({ name: 'account_id', type: 'uuid' })
  accountId: string;

  @Column()
  url: string;

  @Column({ type: 'text', default: '' })
  description: string;

  /** Event types delivered here; null means every type. */
  @Column({ name: 'event_types', type: 'text', array: true, nullable: true })
  eventTypes: string[] | null;

  /** Sealed signing secrets (see `endpoint-secrets.ts`); never selected unless asked for. */
  @Column({ type: 'jsonb', select: false })
  secrets: StoredEndpointSecret[];

  @Column({ default: false })
  disabled: boolean;

  @Column({ name: 'disabled_reason', type: 'text', nullable: true })
  disabledReason: string | null;

  /** Start of the current run of failures; reset by any success. */
  @Column({ name: 'failing_since', type: 'timestamptz', nullable: true })
  failingSince: Date | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
