import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

/** The row a request writes and its job reads. */
@Entity('consumer_orders')
export class Order {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column()
  label: string;
}
