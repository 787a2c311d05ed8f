import {
  Column,
  CreateDateColumn,
  Entity,
  PrimaryGeneratedColumn,
} from 'typeorm';

/**
 * The row every benchmarked request inserts. The table is per run and mode (`BENCH_TABLE`, set
 * by the orchestrator, which creates and drops it): one mode per process, so one table each.
 */
@Entity({ name: process.env.BENCH_TABLE ?? 'rp_rows' })
export class BenchRow {
  @PrimaryGeneratedColumn()
  id: number;

  @Column()
  label: string;

  @Column({ type: 'jsonb' })
  payload: Record<string, unknown>;

  @CreateDateColumn()
  createdAt: Date;
}

/** The small jsonb payload of every row. */
export const PAYLOAD = Object.freeze({
  source: 'bench',
  kind: 'request-path',
  amount: 1250,
  tags: ['a', 'b'],
});

/** Payload of every benchmarked job: the id of the row the request inserted. */
export type JobData = { id: number };

/** The inserted row's id from an `insert()` result (Postgres answers with RETURNING). */
export function insertedId(result: {
  identifiers: Record<string, any>[];
}): number {
  return result.identifiers[0].id as number;
}
