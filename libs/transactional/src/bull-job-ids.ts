import { randomUUID } from 'crypto';
import { dirname } from 'path';
import type { JobOptions, Queue } from 'bull';
import { TransactionalError } from './errors/transactional.error';

/** What `TransactionAwareQueue.add()` resolves with for a job, and what it hands to Bull. */
export interface JobIdentity {
  /**
   * The id Bull gives the job (with a limiter `groupKey`, the job id plus `:` and the group);
   * for a repeatable job, the key of its schedule (there is no single job id).
   */
  id: string;
  /** The caller's options for Bull, plus a generated `jobId` unless the job is repeatable. */
  opts: JobOptions;
  /** Whether Bull will treat the job as repeatable (`opts.repeat` or the queue's default). */
  repeat: boolean;
  /**
   * Whether the job id was generated here (a fresh UUID, unique to this call), rather than
   * chosen by the caller or the queue's `defaultJobOptions`.
   */
  generated: boolean;
}

type RepeatOptions = {
  cron?: string;
  every?: number;
  tz?: string;
  endDate?: Date | string | number;
  jobId?: string | number;
};

/**
 * Names a job as Bull 4 will, before Redis is touched, so that the id can be returned inside a
 * transaction. Follows every use of `opts.jobId` in Bull 4 (`lib/queue.js`, `lib/repeatable.js`):
 * options are merged over the queue's `defaultJobOptions`; a limiter `groupKey` appends `:` and
 * the group (a value of `data`) to the job id; a repeatable job's schedule is keyed by its name,
 * job id, end date, time zone and cron or interval. A non-repeatable job gets a generated
 * `jobId` (random UUID) when the caller gave none, so that Bull ignores a re-enqueue; a
 * repeatable one does not, since Bull would make a new schedule of it. Internal.
 */
export function identifyJob(
  queue: Queue,
  name: string,
  data: unknown,
  opts: JobOptions,
): JobIdentity {
  // NOTE: read only when present: the testing kit's in-memory queue throws on other properties.
  const settings = queue as {
    defaultJobOptions?: JobOptions;
    limiter?: { groupKey?: string };
  };
  const defaults =
    'defaultJobOptions' in queue ? settings.defaultJobOptions : undefined;
  const groupKey = 'limiter' in queue ? settings.limiter?.groupKey : undefined;
  const merged: JobOptions = defaults ? { ...defaults, ...opts } : opts;
  const repeat = merged.repeat as RepeatOptions | undefined;
  let jobId = merged.jobId !== undefined ? String(merged.jobId) : undefined;
  // NOTE: Bull generates a random id for a job without one when the queue has a groupKey,
  // repeatable or not (an empty id counts as none there, and makes Bull count ids otherwise).
  const generated = !jobId && Boolean(groupKey || !repeat);
  if (generated) jobId = randomUUID();
  const bullId =
    jobId && groupKey ? `${jobId}:${String(valueAt(data, groupKey))}` : jobId;
  const withId = jobId === undefined ? opts : { ...opts, jobId };
  if (repeat) {
    assertBullSchedule(queue.name, name, repeat);
    return {
      id: repeatKey(name, repeat, bullId || repeat.jobId),
      opts: withId,
      repeat: true,
      generated,
    };
  }
  return { id: bullId!, opts: withId, repeat: false, generated };
}

/** Bull 4's `getRepeatKey`: the key of a schedule in the queue's `repeat` sorted set. */
function repeatKey(
  name: string,
  repeat: RepeatOptions,
  jobId: string | number | undefined,
): string {
  const id = jobId ? `${jobId}:` : ':';
  const endDate = repeat.endDate
    ? `${new Date(repeat.endDate).getTime()}:`
    : ':';
  const tz = repeat.tz ? `${repeat.tz}:` : ':';
  const suffix = repeat.cron ? tz + repeat.cron : String(repeat.every);
  return `${name}:${id}${endDate}${suffix}`;
}

/** Lodash's `get(object, path)` for the dotted and bracketed paths a `groupKey` may be. */
function valueAt(object: unknown, path: string): unknown {
  let value = object;
  for (const key of path.replace(/\[(\w+)\]/g, '.$1').split('.')) {
    if (value === null || value === undefined) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/** cron-parser's `parseExpression`, as Bull loads it (Bull's own dependency); `null` if absent. */
let parseCron:
  | ((cron: string, options: Record<string, unknown>) => { next(): unknown })
  | null
  | undefined;

function bullCronParser() {
  if (parseCron !== undefined) return parseCron;
  try {
    const bull = dirname(require.resolve('bull/package.json'));
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    parseCron = require(require.resolve('cron-parser', { paths: [bull] }))
      .parseExpression as typeof parseCron;
  } catch {
    parseCron = null;
  }
  return parseCron;
}

/**
 * Throws a `TransactionalError` inside the transaction for a schedule Bull refuses when it adds
 * the repeatable job (after the commit, where the schedule would be lost): `cron` and `every`
 * together, or a `cron` its parser (Bull's cron-parser, with the job's `tz` and `startDate`)
 * cannot read.
 */
function assertBullSchedule(
  queueName: string,
  name: string,
  repeat: RepeatOptions,
): void {
  const refuse = (why: string) => {
    throw new TransactionalError(
      `Queue "${queueName}": the schedule of repeatable job "${name}" ${why}; Bull would ` +
        `refuse it after the commit. Fix opts.repeat; the job was not added.`,
    );
  };
  const { cron, every } = repeat as { cron?: string; every?: number };
  if (cron && every) refuse('has both cron and every');
  if (!cron) return;
  const parse = bullCronParser();
  if (!parse) return;
  try {
    parse(cron, { ...repeat, currentDate: new Date() });
  } catch (error) {
    refuse(
      `has a cron Bull cannot read (${error instanceof Error ? error.message : String(error)})`,
    );
  }
}
