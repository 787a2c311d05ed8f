import type { FlowJob, FlowOpts, FlowProducer } from 'bullmq';
import { TransactionalError } from '../errors/transactional.error';

/** A node of a flow, as `prepareNode` walks it. */
interface FlowNode {
  name: string;
  queueName: string;
  prefix?: string;
  data?: unknown;
  opts?: Record<string, any>;
  children?: unknown[];
}

/** The parent a child node is added under: its job id and queue. */
export interface FlowParent {
  id: string;
  queueName: string;
  prefix?: string;
}

/** The members of BullMQ's `FlowProducer` the checks use (present in BullMQ 5 and 6). */
interface FlowProducerInternals {
  opts?: { prefix?: string };
  Job?: new (
    queue: unknown,
    name: string,
    data: unknown,
    opts: Record<string, any>,
    id?: string,
  ) => { asJSON(): unknown; validateOptions(jobData: unknown): void };
  queueFromNode?(node: FlowNode, prefix?: string): unknown;
  validateFlowJobs?(nodes: FlowJob[]): void;
}

function refused(producer: string, node: FlowNode, reason: string) {
  return new TransactionalError(
    `TransactionAwareFlowProducer("${producer}"): BullMQ would refuse job "${node.name}" of ` +
      `queue "${node.queueName}" after the commit, and with it the whole flow: ${reason}. Fix ` +
      `the job's data or options; the flow was not added.`,
  );
}

const message = (error: unknown) =>
  error instanceof Error ? error.message : String(error);

/**
 * Checks a whole flow as BullMQ's `FlowProducer.add()` will after the commit, so that a flow it
 * would refuse is refused at `add()`, inside the transaction (which then rolls back), rather
 * than lost after the commit with every job of it: the flow's shape (`validateFlowJobs`:
 * deduplication on a node with children), then each node: data `JSON.stringify` cannot write,
 * and the node's options with the producer's own `Job` class and `validateOptions` (a float or
 * too high priority, a backoff jitter outside 0-1, deduplication without an id or on a child,
 * `keepLastIfActive` on a child, `sizeLimit`), so the rules are those of the BullMQ installed.
 * A producer without those members (a stand-in) gets the data check only.
 */
export function assertFlowAccepted(
  name: string,
  producer: FlowProducer,
  flow: FlowJob,
  opts?: FlowOpts,
): void {
  // NOTE: read with `in` only: a stand-in (the testing kit's) throws on members it lacks.
  const read = <K extends keyof FlowProducerInternals>(key: K) =>
    key in producer
      ? (producer as unknown as FlowProducerInternals)[key]
      : undefined;
  const internals: FlowProducerInternals = {
    opts: read('opts'),
    Job: read('Job'),
    queueFromNode: read('queueFromNode'),
    validateFlowJobs: read('validateFlowJobs'),
  };
  if (typeof internals.validateFlowJobs === 'function') {
    try {
      internals.validateFlowJobs.call(producer, [flow]);
    } catch (error) {
      throw refused(name, flow, message(error));
    }
  }
  assertNode(name, producer, internals, flow, opts, undefined);
}

function assertNode(
  name: string,
  target: FlowProducer,
  producer: FlowProducerInternals,
  node: FlowNode,
  flowOpts: FlowOpts | undefined,
  parent: FlowParent | undefined,
): void {
  try {
    JSON.stringify(node.data);
  } catch (error) {
    throw refused(
      name,
      node,
      `its data cannot be written as JSON (${message(error)}); pass plain JSON data (no ` +
        `BigInt, no cycles)`,
    );
  }
  const defaults =
    flowOpts?.queuesOptions?.[node.queueName]?.defaultJobOptions ?? {};
  const jobOpts: Record<string, any> = { ...defaults, ...node.opts };
  const id: string = jobOpts.jobId ?? 'validation';
  if (parent) {
    const parentPrefix = parent.prefix ?? producer.opts?.prefix ?? 'bull';
    jobOpts.parent = {
      id: parent.id,
      queue: `${parentPrefix}:${parent.queueName}`,
    };
    if (jobOpts.deduplication?.keepLastIfActive) {
      throw refused(
        name,
        node,
        'keepLastIfActive deduplication cannot be used on flow nodes with a parent',
      );
    }
  }
  const { Job, queueFromNode } = producer;
  if (typeof Job === 'function' && typeof queueFromNode === 'function') {
    let job;
    try {
      const queue = queueFromNode.call(
        target,
        node,
        node.prefix ?? producer.opts?.prefix,
      );
      job = new Job(queue, node.name, node.data, jobOpts, id);
    } catch {
      // NOTE: a BullMQ whose internals differ: its own add() still checks after the commit.
      job = undefined;
    }
    if (job) {
      try {
        job.validateOptions(job.asJSON());
      } catch (error) {
        throw refused(name, node, message(error));
      }
    }
  }
  for (const child of node.children ?? []) {
    assertNode(name, target, producer, child as FlowNode, flowOpts, {
      id,
      queueName: node.queueName,
      prefix: node.prefix,
    });
  }
}
