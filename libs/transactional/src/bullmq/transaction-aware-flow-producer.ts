import { Logger } from '@nestjs/common';
import type { FlowJob, FlowOpts, FlowProducer } from 'bullmq';
import { NoTransactionError } from '../errors/no-transaction.error';
import { TransactionalError } from '../errors/transactional.error';
import { jsonCopy } from '../job-data';
import { assertRedisReady, watchRedisReadiness } from '../redis-readiness';
import type { TransactionScope } from '../transaction-context';
import { transactionStorage } from '../transaction-storage';
import { DEFAULT_CONNECTION_NAME } from '../transactional.constants';
import type { NoTransactionPolicy } from '../transactional.interfaces';
import { assertFlowAccepted } from './bullmq-flow-validation';
import { identifyBullMQJob } from './bullmq-job-ids';
import { bullmqRedisClient } from './bullmq-queue-adapter';
import type { TransactionAwareFlowProducerOptions } from './bullmq.interfaces';

/** The ids of a flow's jobs, shaped like the flow (what `add()` resolves with). */
export interface FlowJobIds {
  /** The job id (`opts.jobId`, generated when absent). */
  id: string;
  /** Job name. */
  name: string;
  /** Queue of the job. */
  queueName: string;
  /** The children's ids, in the order of `flow.children`. */
  children?: FlowJobIds[];
}

interface PreparedFlow {
  flow: FlowJob;
  opts?: FlowOpts;
  ids: FlowJobIds;
  /** Nodes with a caller-given id, which BullMQ may already hold (checked after the add). */
  custom: CustomNode[];
}

/**
 * A node of a flow whose id the caller gave, with the parent it must hang from: Redis keys
 * without the prefix (`queue:id`), the producer's prefix added when they are checked.
 */
interface CustomNode {
  key: string;
  prefix?: string;
  name: string;
  parent?: { key: string; prefix?: string };
}

/** Counters of one flow producer, for health checks and metrics. */
export interface TransactionAwareFlowProducerStats {
  /** Flows deferred inside transactions. */
  deferred: number;
  /** Flows handed to BullMQ (after commit, or directly outside a transaction). */
  enqueued: number;
  /** Flows whose after-commit enqueue failed (logged with their root ids). */
  failed: number;
}

/**
 * A BullMQ `FlowProducer` whose `add()` and `addBulk()` respect the caller's transaction, as
 * `TransactionAwareQueue` does for jobs: inside a transaction they resolve at once with the ids
 * of every job of the flow (generated up front for each job without `opts.jobId`, parent and
 * children alike, and passed to BullMQ so that a re-enqueue is ignored), and touch Redis only
 * after the outermost commit; a rollback, or that of the NESTED scope they were added in, drops
 * the flow. Outside a transaction the `whenNoTransaction` policy applies. A flow is added in one
 * Redis transaction by BullMQ: all its jobs or none.
 *
 * Durable mode is not supported for flows: a flow is not written to the outbox, so a crash or a
 * Redis outage between the commit and the enqueue loses it (logged, counted in `stats.failed`).
 * Registering one with `durable: true`, or passing `opts.durable` on a job, is refused. Inject
 * with `@InjectTransactionAwareFlowProducer(name)`.
 */
export class TransactionAwareFlowProducer {
  /** Counters since start-up. */
  readonly stats: TransactionAwareFlowProducerStats = {
    deferred: 0,
    enqueued: 0,
    failed: 0,
  };
  /** Name of the flow producer, as registered with `BullModule.registerFlowProducer`. */
  readonly name: string;
  private readonly logger: Logger;
  private readonly connectionName: string;
  private readonly policy: NoTransactionPolicy;
  private producer?: FlowProducer;

  constructor(
    options: TransactionAwareFlowProducerOptions,
    /** Returns the BullMQ flow producer; called once, on first use. */
    private readonly resolveProducer: () => FlowProducer,
    /**
     * The transaction runner of the flow producer's application (see `TransactionAwareQueue`):
     * a transaction another application of the process opened is not one of its own.
     */
    private readonly runner?: object,
  ) {
    if ((options as { durable?: unknown }).durable) {
      throw durableRefused(options.name);
    }
    this.name = options.name;
    this.connectionName = options.connectionName ?? DEFAULT_CONNECTION_NAME;
    this.policy = options.whenNoTransaction ?? 'enqueue';
    this.logger = new Logger(`TransactionAwareFlowProducer:${options.name}`);
  }

  /** Connection whose transactions this flow producer defers to. */
  get connection(): string {
    return this.connectionName;
  }

  /** The wrapped BullMQ flow producer, for everything but adding flows. */
  get flowProducer(): FlowProducer {
    this.producer ??= this.resolveProducer();
    return this.producer;
  }

  /** Resolves the flow producer at start-up, so that a missing registration fails fast. */
  onModuleInit(): void {
    watchRedisReadiness(bullmqRedisClient(this.flowProducer));
  }

  /**
   * Adds a flow (a job and its children, any depth); resolves with the ids of all its jobs.
   * Same arguments as BullMQ's `FlowProducer.add`. Custom ids follow BullMQ's rules (checked
   * here, see `TransactionAwareQueue`); `opts.repeat` and `opts.durable` are refused.
   */
  async add(flow: FlowJob, opts?: FlowOpts): Promise<FlowJobIds> {
    const [ids] = await this.submit([this.prepare(flow, opts)]);
    return ids;
  }

  /** Adds several flows (one Redis transaction); resolves with their ids, in order. */
  async addBulk(flows: FlowJob[]): Promise<FlowJobIds[]> {
    return this.submit(flows.map((flow) => this.prepare(flow)));
  }

  private prepare(flow: FlowJob, opts?: FlowOpts): PreparedFlow {
    const custom: CustomNode[] = [];
    const [prepared, ids] = this.prepareNode(flow, custom);
    // NOTE: checked at add(), in the transaction: BullMQ refuses a flow as a whole.
    assertFlowAccepted(this.name, this.flowProducer, prepared as FlowJob, opts);
    return { flow: withDataCopied(prepared as FlowJob), opts, ids, custom };
  }

  private prepareNode(
    node: {
      name: string;
      queueName: string;
      prefix?: string;
      data?: unknown;
      opts?: Record<string, any>;
      children?: unknown[];
    },
    custom: CustomNode[],
    parent?: { key: string; prefix?: string },
  ): [typeof node, FlowJobIds] {
    const { durable, ...given } = node.opts ?? {};
    if (durable !== undefined) throw durableRefused(this.name);
    const identity = identifyBullMQJob(node.queueName, undefined, given);
    const key = `${node.queueName}:${identity.id}`;
    // NOTE: BullMQ ignores a node whose id it holds (a child held under another parent is
    // not attached; a held parent is not made a flow parent): the flow would half-exist.
    if (!identity.generated) {
      custom.push({ key, prefix: node.prefix, name: node.name, parent });
    }
    const children = node.children?.map((child) =>
      this.prepareNode(child as typeof node, custom, {
        key,
        prefix: node.prefix,
      }),
    );
    const prepared = {
      ...node,
      opts: identity.opts,
      ...(children ? { children: children.map(([c]) => c) } : {}),
    };
    const ids: FlowJobIds = {
      id: identity.id,
      name: node.name,
      queueName: node.queueName,
      ...(children ? { children: children.map(([, c]) => c) } : {}),
    };
    return [prepared, ids];
  }

  private async submit(flows: PreparedFlow[]): Promise<FlowJobIds[]> {
    const what = `TransactionAwareFlowProducer("${this.name}").add()`;
    const scope = transactionStorage.open(
      this.connectionName,
      what,
      this.runner,
    );
    if (scope) {
      this.defer(scope, flows);
    } else if (this.policy === 'throw') {
      throw new NoTransactionError(this.name, this.connectionName);
    } else {
      if (this.policy === 'warn') {
        this.logger.warn(
          `add() outside a transaction on connection "${this.connectionName}": enqueued at ` +
            `once (root job ids ${rootIds(flows)}). Call it from a @Transactional() scope, or ` +
            `register the flow producer with whenNoTransaction: 'enqueue' if this is intended.`,
        );
      }
      // NOTE: as TransactionAwareQueue: a transaction of another connection may be open here.
      await transactionStorage.runDetached(() => this.enqueue(flows));
    }
    return flows.map((flow) => flow.ids);
  }

  private defer(scope: TransactionScope, flows: PreparedFlow[]): void {
    this.stats.deferred += flows.length;
    scope.frame.afterCommit.push({
      run: () => this.flush(flows),
      describe: () =>
        `enqueue ${flows.length} flow(s) with flow producer "${this.name}" (root job ids ` +
        `${rootIds(flows)})`,
    });
  }

  /** Enqueues flows after the commit, refusing at once while Redis is not connected. */
  private async flush(flows: PreparedFlow[]): Promise<void> {
    try {
      assertRedisReady(bullmqRedisClient(this.flowProducer), this.name);
      await this.enqueue(flows);
    } catch (error) {
      this.stats.failed += flows.length;
      throw error;
    }
    await this.reportPartialFlows(flows);
  }

  /**
   * A node with a custom id BullMQ already held is ignored by BullMQ inside the flow's MULTI
   * (no error for a child): the flow then exists without it. Reported (logged, counted failed).
   */
  private async reportPartialFlows(flows: PreparedFlow[]): Promise<void> {
    if (!flows.some((flow) => flow.custom.length > 0)) return;
    type Client = {
      hmget(key: string, ...fields: string[]): Promise<(string | null)[]>;
    };
    let client: Client | undefined;
    let defaultPrefix: string;
    try {
      const holder = this.flowProducer as unknown as {
        backend?: { client?: Promise<Client> };
        client?: Promise<Client>;
        opts?: { prefix?: string };
      };
      // NOTE: BullMQ 6: `backend.client`; BullMQ 5: `client`.
      client = await (holder.backend?.client ?? holder.client);
      defaultPrefix = holder.opts?.prefix ?? 'bull';
    } catch {
      // NOTE: the testing kit's in-memory flow producer: no Redis to read.
      return;
    }
    if (!client) return;
    for (const flow of flows) {
      for (const node of flow.custom) {
        const key = `${node.prefix ?? defaultPrefix}:${node.key}`;
        const parentKey = node.parent
          ? `${node.parent.prefix ?? defaultPrefix}:${node.parent.key}`
          : undefined;
        const [name, heldParent] = await client.hmget(key, 'name', 'parentKey');
        if (name !== node.name || (heldParent ?? undefined) !== parentKey) {
          this.stats.enqueued -= 1;
          this.stats.failed += 1;
          throw new TransactionalError(
            `Flow producer "${this.name}": job ${key} of the flow with root id ` +
              `${flow.ids.id} was already held by BullMQ (custom jobId), so BullMQ added the ` +
              `flow without it. Use ids unique to each flow, or no jobId.`,
          );
        }
      }
    }
  }

  private async enqueue(flows: PreparedFlow[]): Promise<void> {
    if (flows.length === 1) {
      await this.flowProducer.add(flows[0].flow, flows[0].opts);
    } else {
      await this.flowProducer.addBulk(flows.map((flow) => flow.flow));
    }
    this.stats.enqueued += flows.length;
  }
}

function durableRefused(name: string): TransactionalError {
  return new TransactionalError(
    `Flow producer "${name}": durable mode is not supported for flows (the outbox stores ` +
      `single jobs). Add the flow without durable, or add durable jobs to a ` +
      `TransactionAwareQueue and build the flow from a worker.`,
  );
}

function rootIds(flows: PreparedFlow[]): string {
  return flows.map((flow) => flow.ids.id).join(', ');
}

/**
 * `node` and its children with their data as it is now (see `jsonCopy`): the flow goes to Redis
 * after the commit, and the caller may change the objects meanwhile. Checked as JSON already.
 */
function withDataCopied(node: FlowJob): FlowJob {
  return {
    ...node,
    ...('data' in node ? { data: jsonCopy(node.data) } : {}),
    ...(node.children ? { children: node.children.map(withDataCopied) } : {}),
  };
}
