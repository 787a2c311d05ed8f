import {
  Column,
  CreateDateColumn,
  Entity,
  PrimaryGeneratedColumn,
} from 'typeorm';

/**
 * The row every benchmarked request inserts. The table name is per run (`BENCH_TABLE`, set by
 * the orchestrator, which creates and drops the table), so runs never share a table.
 */
@Entity({ name: process.env.BENCH_TABLE ?? 'bench_overhead_rows' })
export class BenchRow {
  @PrimaryGeneratedColumn()
  id: number;

  @Column()
  label: string;

  @CreateDateColumn()
  createdAt: Date;
}

/** DDL matching `BenchRow` (the servers run with `synchronize: false`). */
export function createTableSql(table: string): string {
  return (
    `CREATE TABLE "${table}" (` +
    `"id" SERIAL PRIMARY KEY, ` +
    `"label" character varying NOT NULL, ` +
    `"createdAt" TIMESTAMP NOT NULL DEFAULT now())`
  );
}
