import type { Queue } from 'bull';

/**
 * Deletes, among `jobIds`, the job hashes that hold no job; resolves with the ids it removed
 * and those it could not remove yet (still locked). Bull takes such a hash for the job itself and ignores an `add()` with its id,
 * forever; call this before re-adding jobs with fixed ids (the outbox relay does).
 *
 * NOTE: Bull moves a job to active in two commands (BRPOPLPUSH, then a script that locks it and
 * sets `processedOn`). When Redis loses its data in between (a restart without persistence, a
 * FLUSHALL), the script recreates the job's hash on the empty server with `processedOn` only:
 * no data, in no list. Such a husk can be removed once its lock has expired; a locked one is
 * left for the next call.
 */
export async function removeBullJobHusks(
  queue: Queue,
  jobIds: string[],
): Promise<{ removed: string[]; locked: string[] }> {
  if (jobIds.length === 0) return { removed: [], locked: [] };
  const multi = queue.client.multi();
  for (const id of jobIds)
    multi.exists(queue.toKey(id)).hexists(queue.toKey(id), 'data');
  const replies = (await multi.exec()) ?? [];
  const husks = jobIds.filter(
    (_, i) => replies[2 * i]?.[1] === 1 && replies[2 * i + 1]?.[1] === 0,
  );
  const removed: string[] = [];
  const locked: string[] = [];
  for (const id of husks) {
    const job = await queue.getJob(id);
    const ok = await job?.remove().then(
      () => true,
      () => false,
    );
    (ok ? removed : locked).push(id);
  }
  return { removed, locked };
}
