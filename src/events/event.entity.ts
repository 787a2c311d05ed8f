import {
  Column,
  CreateDateColumn,
  Entity,
  Index,
  PrimaryGeneratedColumn,
} from 'typeorm';

/** Something that happened, stored before it is delivered; its id is the `webhook-id`. */
@Entity({ name: 'events' })
@Index(['accountId', 'createdAt'])
export class WebhookEvent {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column({ name: 'account_id', type: 'uuid' })
  accountId: string;

  @Column()
  type: string;

  /** The payload as accepted: a json (not jsonb) column keeps its text exactly. */
  @Column({ type: 'json' })
  payload: Record<string, unknown>;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
