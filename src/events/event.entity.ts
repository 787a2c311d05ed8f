import {
  Column,
  CreateDateColumn,
  Entity,
  PrimaryGeneratedColumn,
} from 'typeorm';

/** Something that happened, stored before it is delivered; its id is the `webhook-id`. */
@Entity({ name: 'events' })
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

  /** The trip a `trip.*` event is about (filter of `GET /v1/events`). */
  @Column({ name: 'trip_id', type: 'uuid', nullable: true })
  tripId: string | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
