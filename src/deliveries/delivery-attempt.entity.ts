import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/** What started an attempt. */
export type AttemptTrigger = 'scheduled' | 'manual';

/** Outcome of an attempt; `interrupted` is one whose worker died mid-flight. */
export type AttemptStatus =
  | 'in_progress'
  | 'succeeded'
  | 'failed'
  | 'interrupted';

/** One HTTP exchange with an endpoint (or its failure to happen). */
@Entity({ name: 'delivery_attempts' })
@Index(['deliveryId', 'number'])
export class DeliveryAttempt {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column({ name: 'delivery_id', type: 'uuid' })
  deliveryId: string;

  @Column({ type: 'int' })
  number: number;

  @Column({ type: 'text' })
  trigger: AttemptTrigger;

  @Column({ type: 'text', default: 'in_progress' })
  status: AttemptStatus;

  @Column({ name: 'status_code', type: 'int', nullable: true })
  statusCode: number | null;

  @Column({ name: 'duration_ms', type: 'int', nullable: true })
  durationMs: number | null;

  @Column({ name: 'error_class', type: 'text', nullable: true })
  errorClass: string | null;

  @Column({ name: 'error_message', type: 'text', nullable: true })
  errorMessage: string | null;

  @Column({ name: 'response_body', type: 'text', nullable: true })
  responseBody: string | null;

  @Column({ name: 'response_truncated', default: false })
  responseTruncated: boolean;

  @Column({ name: 'next_attempt_at', type: 'timestamptz', nullable: true })
  nextAttemptAt: Date | null;

  @Column({ name: 'started_at', type: 'timestamptz' })
  startedAt: Date;

  @Column({ name: 'finished_at', type: 'timestamptz', nullable: true })
  finishedAt: Date | null;
}
