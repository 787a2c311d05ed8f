/**
 * The queue library the library specs run against: `LIB_QUEUE=bull` (default) or
 * `LIB_QUEUE=bullmq`. CI runs the library suite once per value.
 */
export type LibQueueKind = 'bull' | 'bullmq';

function kindFromEnv(): LibQueueKind {
  const value = process.env.LIB_QUEUE ?? 'bull';
  if (value !== 'bull' && value !== 'bullmq') {
    throw new Error(`LIB_QUEUE must be "bull" or "bullmq", got "${value}"`);
  }
  return value;
}

/** The queue library of this run. */
export const LIB_QUEUE: LibQueueKind = kindFromEnv();

/**
 * `describe` when the run is on Bull, else `describe.skip` with the reason in the title: for
 * specs of Bull-only behaviour (Bull's repeat keys, limiter groups, job husks, Bull's client).
 */
export function describeBullOnly(reason: string) {
  return (title: string, body: () => void) =>
    LIB_QUEUE === 'bull'
      ? describe(title, body)
      : describe.skip(`${title} [Bull only: ${reason}]`, body);
}

/** `describe` when the run is on BullMQ, else skipped (BullMQ-only specs: flows, id rules). */
export function describeBullMQOnly(title: string, body: () => void) {
  return LIB_QUEUE === 'bullmq'
    ? describe(title, body)
    : describe.skip(`${title} [BullMQ only: run with LIB_QUEUE=bullmq]`, body);
}

/** `it` when the run is on Bull, else `it.skip` with the reason in the title. */
export function itBullOnly(reason: string) {
  return (title: string, body: () => Promise<unknown>) =>
    LIB_QUEUE === 'bull'
      ? it(title, body)
      : it.skip(`${title} [Bull only: ${reason}]`, body);
}
