import {
  Column,
  CreateDateColumn,
  Entity,
  PrimaryGeneratedColumn,
  Unique,
  UpdateDateColumn,
} from 'typeorm';

/** Where a trip stands. */
export type TripStatus = 'scheduled' | 'delayed' | 'arrived';

/** A shipment on its way from origin to destination. */
@Entity({ name: 'trips' })
@Unique(['accountId', 'reference'])
export class Trip {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column({ name: 'account_id', type: 'uuid' })
  accountId: string;

  @Column()
  reference: string;

  @Column()
  origin: string;

  @Column()
  destination: string;

  @Column({ name: 'planned_arrival', type: 'timestamptz' })
  plannedArrival: Date;

  @Column({ name: 'expected_arrival', type: 'timestamptz' })
  expectedArrival: Date;

  @Column({ type: 'text', default: 'scheduled' })
  status: TripStatus;

  @Column({ name: 'delay_minutes_total', type: 'int', default: 0 })
  delayMinutesTotal: number;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
