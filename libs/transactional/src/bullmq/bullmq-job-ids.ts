import { randomUUID } from 'crypto';
import type { JobIdentity } from '../bull-job-ids';
import { TransactionalError } from '../errors/transactional.error';

/**
 * Names a job as BullMQ (5 and 6) will, before Redis is touched. The queue's `defaultJobOptions`
 * count for `repeat` only (BullMQ ignores a default `jobId`); a job without `jobId` gets a generated one (random UUID: no `:`,
 * not an integer, so BullMQ accepts it as a custom id) so that BullMQ ignores a re-enqueue.
 * A custom id BullMQ would refuse once the transaction has committed (`Job.validateOptions`,
 * `Queue.addJob`: not a string, `'0'` or starting with `'0:'`, an integer, or a `:` other than
 * the three-part form) is refused here instead, inside the transaction, where the error rolls
 * it back rather than losing the job. `repeat` is refused: BullMQ 6 dropped it from `add()`
 * (5 deprecated it), and a schedule is not a job that a transaction could add once; call
 * `queue.upsertJobScheduler()` instead. Internal.
 */
export function identifyBullMQJob(
  queueName: string,
  defaults: Record<string, any> | undefined,
  opts: Record<string, any>,
): JobIdentity {
  const merged = { ...defaults, ...opts };
  if (merged.repeat !== undefined) {
    throw new TransactionalError(
      `Queue "${queueName}" (BullMQ): opts.repeat is not supported by TransactionAwareQueue ` +
        `(BullMQ 6 removed it from Queue.add). Schedule repeatable jobs with ` +
        `queue.upsertJobScheduler(), outside the transaction or in an afterCommit hook.`,
    );
  }
  // NOTE: BullMQ's add() sets `jobId: opts.jobId` over the queue's defaults: a default jobId is
  // never used (Bull 4 uses it).
  const given: unknown = opts.jobId;
  if (given === undefined || given === null || given === '') {
    const jobId = randomUUID();
    return {
      id: jobId,
      opts: { ...opts, jobId },
      repeat: false,
      generated: true,
    };
  }
  assertBullMQJobId(queueName, given);
  return { id: given, opts, repeat: false, generated: false };
}

/** Throws a `TransactionalError` naming the rule when BullMQ would refuse `jobId`. */
export function assertBullMQJobId(
  queueName: string,
  jobId: unknown,
): asserts jobId is string {
  const refuse = (rule: string) => {
    throw new TransactionalError(
      `Queue "${queueName}" (BullMQ): job id ${JSON.stringify(jobId)} ${rule}. BullMQ would ` +
        `refuse it after the commit; pass a string such as "order-42", or no jobId (one is ` +
        `generated).`,
    );
  };
  if (typeof jobId !== 'string') refuse('is not a string');
  const id = jobId as string;
  if (id === '0' || id.startsWith('0:')) refuse(`is '0' or starts with '0:'`);
  if (`${parseInt(id, 10)}` === id) {
    refuse('is an integer (BullMQ keeps integers for the ids it generates)');
  }
  if (id.includes(':') && id.split(':').length !== 3) refuse('contains ":"');
}
