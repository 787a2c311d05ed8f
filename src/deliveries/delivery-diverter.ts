import { Injectable } from '@nestjs/common';
import type { JobDiverter, OutgoingJob } from 'nestjs-transactional-jobs';
import type { DeliveryJob } from './delivery-queue';
import { EndpointSlots } from './endpoint-slots';

/**
 * Parks, as they are enqueued (after the commit, or by the outbox relay), the delivery jobs of
 * endpoints whose slots are all taken: the worker that frees a slot takes them from there, so a
 * flood to one endpoint costs the workers nothing per job that waits (no Bull job cycle, no
 * Redis round trip of their own). One Redis pipeline per batch, whatever its endpoints. Only
 * first attempts due now are parked; retries (delayed), manual resends and recovers go to the
 * queue.
 */
@Injectable()
export class DeliveryDiverter implements JobDiverter {
  constructor(private readonly slots: EndpointSlots) {}

  async divert(jobs: readonly OutgoingJob[]): Promise<readonly OutgoingJob[]> {
    const byEndpoint = new Map<string, OutgoingJob[]>();
    const kept: OutgoingJob[] = [];
    for (const job of jobs) {
      const endpointId = parkable(job);
      if (endpointId === undefined) kept.push(job);
      else if (byEndpoint.has(endpointId))
        byEndpoint.get(endpointId)!.push(job);
      else byEndpoint.set(endpointId, [job]);
    }
    if (byEndpoint.size === 0) return kept;
    const flags = await this.slots.parkIfFull(
      new Map(
        [...byEndpoint].map(([endpointId, group]) => [
          endpointId,
          group.map((job) => ({
            jobId: String(job.opts.jobId),
            data: job.data as DeliveryJob,
          })),
        ]),
      ),
    );
    for (const [endpointId, group] of byEndpoint) {
      const queued = flags.get(endpointId)!;
      group.forEach((job, i) => {
        if (queued[i]) kept.push(job);
      });
    }
    return kept;
  }
}

/** The endpoint of a job that may be parked: a scheduled first attempt, due now. */
function parkable(job: OutgoingJob): string | undefined {
  const data = job.data as DeliveryJob;
  if (!data?.endpointId || typeof job.opts.jobId !== 'string') return undefined;
  if ((data.trigger ?? 'scheduled') !== 'scheduled') return undefined;
  if (data.onlyIfFailedAt !== undefined || data.busySince !== undefined)
    return undefined;
  if (Number(job.opts.delay ?? 0) > 0) return undefined;
  return data.endpointId;
}
