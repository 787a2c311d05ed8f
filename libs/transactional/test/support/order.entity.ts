import {
  Column,
  CreateDateColumn,
  Entity,
  PrimaryGeneratedColumn,
} from 'typeorm';

/** The row a request writes and its job reads back. */
@Entity({ name: 'tx_spec_orders' })
export class Order {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column()
  label: string;

  @CreateDateColumn()
  createdAt: Date;
}
