import type { FlowProducer } from 'bullmq';
import type { JobRecorder } from './job-recorder';
import type { CapturedJob } from './testing.interfaces';
import { unavailable } from './unavailable';
import { withBullMQFlowRules } from './bullmq-rules';

interface FlowNode {
  name: string;
  queueName: string;
  data?: unknown;
  opts?: Record<string, any>;
  children?: FlowNode[];
}

/**
 * The part of a BullMQ `FlowProducer` `TransactionAwareFlowProducer` writes to, in memory: each
 * job of a flow goes to the recorder under its own queue, children before their parent (the
 * order BullMQ processes them in). Internal to the kit.
 */
class InMemoryFlowProducer {
  constructor(
    readonly name: string,
    private readonly recorder: JobRecorder,
  ) {}

  async add(flow: FlowNode): Promise<void> {
    for (const child of flow.children ?? []) await this.add(child);
    const job: CapturedJob = {
      id: String(flow.opts?.jobId),
      name: flow.name,
      data: flow.data,
      opts: { ...flow.opts },
    };
    // NOTE: BullMQ ignores a flow job whose id its queue holds, as it does an add().
    await this.recorder.offer(flow.queueName, job);
  }

  async addBulk(flows: FlowNode[]): Promise<void> {
    for (const flow of flows) await this.add(flow);
  }
}

/**
 * An in-memory stand-in for the BullMQ flow producer `name`; anything but `name`, `add` and
 * `addBulk` throws a `TransactionalError` that says so. Internal to the kit.
 */
export function inMemoryFlowProducer(
  name: string,
  recorder: JobRecorder,
): FlowProducer {
  return unavailable<FlowProducer>(
    withBullMQFlowRules(new InMemoryFlowProducer(name, recorder)),
    (property) =>
      `FlowProducer "${name}".${property} is not available in TransactionalTestingModule: ` +
      `its in-memory flow producer only takes add() and addBulk(). Read the jobs with ` +
      `TransactionalTestingKit.jobs(queueName).`,
  );
}
