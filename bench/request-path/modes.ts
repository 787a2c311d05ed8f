/**
 * The modes of the request-path benchmark (`npm run bench`): one tiny Nest app per mode, each
 * in a process of its own, all serving `POST /r` with the same work (insert one row with a small
 * jsonb payload in a transaction, enqueue one Bull job carrying its id, answer `{ id }`), written
 * the way each approach is meant to be used.
 */

/** Which code (and which libraries) a mode's process loads. */
export type Family = 'plain' | 'ours' | 'typeorm-transactional' | 'nestjs-cls';

/** One benchmarked mode. */
export interface Mode {
  key: string;
  family: Family;
  /** Whether `POST /r` inserts a row / enqueues a job (the correctness check). */
  inserts: boolean;
  enqueues: boolean;
  label: string;
  /** Not in the default set: run only when `BENCH_MODES` names it (an A/B of one option). */
  onRequest?: true;
}

export const MODES: readonly Mode[] = [
  {
    key: 'hello',
    family: 'plain',
    inserts: false,
    enqueues: false,
    label: 'framework ceiling: the handler answers { id: 0 }, no I/O',
  },
  {
    key: 'b1',
    family: 'plain',
    inserts: true,
    enqueues: false,
    label: 'hand-written: dataSource.transaction(insert), no job',
  },
  {
    key: 'b2',
    family: 'plain',
    inserts: true,
    enqueues: true,
    label:
      'hand-written, correct: dataSource.transaction(insert), then queue.add({ id }) after COMMIT',
  },
  {
    key: 'b2i',
    family: 'plain',
    inserts: true,
    enqueues: true,
    label:
      'b2 behind a pass-through interceptor (next.handle()): what any interceptor costs, the floor of o1i',
  },
  {
    key: 'b3',
    family: 'plain',
    inserts: true,
    enqueues: true,
    label:
      'hand-written, naive (the bug): queue.add({ id }) inside the transaction',
  },
  {
    key: 'p1',
    family: 'typeorm-transactional',
    inserts: true,
    enqueues: true,
    label:
      'typeorm-transactional @Transactional() + runOnTransactionCommit(() => queue.add), awaited before the response',
  },
  {
    key: 'p2',
    family: 'nestjs-cls',
    inserts: true,
    enqueues: true,
    label:
      '@nestjs-cls/transactional @Transactional() (ClsModule middleware mount), queue.add after the method returns',
  },
  {
    key: 'o1',
    family: 'ours',
    inserts: true,
    enqueues: true,
    label:
      'ours: @Transactional() on the handler, TransactionAwareQueue.add (enqueued after COMMIT)',
  },
  {
    key: 'o1i',
    family: 'ours',
    inserts: true,
    enqueues: true,
    label: 'ours: @Transactional({ useInterceptor: true }) on the handler',
  },
  {
    key: 'o1s',
    family: 'ours',
    inserts: true,
    enqueues: true,
    label: 'ours: @Transactional() on a service method the handler calls',
  },
  {
    key: 'o2',
    family: 'ours',
    inserts: true,
    enqueues: true,
    label:
      'ours, durable queue: outbox row in the transaction, fast-path enqueue after COMMIT',
  },
  {
    key: 'o1c',
    family: 'ours',
    inserts: true,
    enqueues: true,
    label:
      'o1 with coalesceEnqueues: true (flushes that come while a Redis call is in flight share one)',
    onRequest: true,
  },
  {
    key: 'o2c',
    family: 'ours',
    inserts: true,
    enqueues: true,
    label: 'o2 with coalesceEnqueues: true',
    onRequest: true,
  },
];

/** Mode of a key, or an error listing the known ones. */
export function modeOf(key: string): Mode {
  const mode = MODES.find((m) => m.key === key);
  if (!mode) {
    throw new Error(
      `unknown mode "${key}" (known: ${MODES.map((m) => m.key).join(', ')})`,
    );
  }
  return mode;
}
