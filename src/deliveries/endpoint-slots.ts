import type { ChainableCommander, Redis } from 'ioredis';
import { DELIVERY_QUEUE, type DeliveryJob } from './delivery-queue';

// KEYS: in-flight zset, parked zset, parked data hash, set of endpoints with parked jobs,
// park sequence. ARGV: now, lease end, member, limit, key ttl (ms), job id, job json, endpoint,
// the job's place in line when it was handed back ('' for none: a new place at the end).
// Returns 0 (parked), or 1 + the number of the endpoint's parked jobs (the slot is taken).
const ACQUIRE_OR_PARK = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1 + redis.call('ZCARD', KEYS[2])
end
if not redis.call('ZSCORE', KEYS[2], ARGV[6]) then
  local place = ARGV[9]
  if place == '' then place = redis.call('INCR', KEYS[5]) end
  redis.call('ZADD', KEYS[2], place, ARGV[6])
  redis.call('HSET', KEYS[3], ARGV[6], ARGV[7])
end
redis.call('SADD', KEYS[4], ARGV[8])
return 0`;

// KEYS: in-flight, parked, data, endpoints set. ARGV: member, now, lease end, mode, endpoint.
// Modes: take (keep the slot for the next parked job), free (free it; if nobody else holds
// one, hand the next parked job to the queue), yield (free it and hand the next parked job to
// the queue, so that it queues behind other endpoints' jobs). Returns {1, id, json, left}: the
// slot now serves this parked job, `left` more are parked; {2, id, json, place}: hand this job
// to the queue (`place`: its place in line, kept if it is parked again); {0}: freed.
const RELEASE_OR_NEXT = `
local function pop()
  local next = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if #next == 0 then
    redis.call('SREM', KEYS[4], ARGV[5])
    return nil
  end
  local json = redis.call('HGET', KEYS[3], next[1])
  redis.call('ZREM', KEYS[2], next[1])
  redis.call('HDEL', KEYS[3], next[1])
  if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('SREM', KEYS[4], ARGV[5]) end
  return {next[1], json, next[2]}
end
if ARGV[4] == 'take' and redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  local next = pop()
  if next then
    redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
    return {1, next[1], next[2], redis.call('ZCARD', KEYS[2])}
  end
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if ARGV[4] == 'yield' or redis.call('ZCARD', KEYS[1]) == 0 then
  local next = pop()
  if next then return {2, next[1], next[2], next[3]} end
end
return {0}`;

// KEYS: in-flight, parked, data, endpoints set. ARGV: member, lease end, endpoint. For a slot
// still in use: the endpoint's next parked job, which the slot serves after its current one
// ({id, json, left}: `left` more are parked; the lease renewed), or {} (none parked, or the slot
// is not held any more; it is left as it is either way).
const TAKE_NEXT = `
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {} end
local next = redis.call('ZRANGE', KEYS[2], 0, 0)
if #next == 0 then return {} end
local json = redis.call('HGET', KEYS[3], next[1])
redis.call('ZREM', KEYS[2], next[1])
redis.call('HDEL', KEYS[3], next[1])
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('SREM', KEYS[4], ARGV[3]) end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return {next[1], json, redis.call('ZCARD', KEYS[2])}`;

// KEYS: in-flight, parked, data, endpoints set. ARGV: now, endpoint. A parked job of an
// endpoint nobody holds a slot of (its holders died): {id, json, place}, to hand to the queue.
const KICK = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[4], ARGV[2])
  return {}
end
if redis.call('ZCARD', KEYS[1]) > 0 then return {} end
local next = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local json = redis.call('HGET', KEYS[3], next[1])
redis.call('ZREM', KEYS[2], next[1])
redis.call('HDEL', KEYS[3], next[1])
return {next[1], json, next[2]}`;

// KEYS: in-flight, parked, data, endpoints set, park sequence. ARGV: now, limit, endpoint,
// then per job its id, json and place in line ('' for none, as in ACQUIRE_OR_PARK). Jobs that
// arrive while the endpoint's slots are all taken are parked (as ACQUIRE_OR_PARK would, in the
// worker); as many as there are free slots are left for the queue. Returns a flag per job: 1 for
// the queue, 0 parked (now or before).
const PARK_IF_FULL = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
local flags = {}
local parked = false
for i = 4, #ARGV, 3 do
  if redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    flags[#flags + 1] = 0
  elseif free > 0 then
    free = free - 1
    flags[#flags + 1] = 1
  else
    local place = ARGV[i + 2]
    if place == '' then place = redis.call('INCR', KEYS[5]) end
    redis.call('ZADD', KEYS[2], place, ARGV[i])
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
    flags[#flags + 1] = 0
    parked = true
  end
end
if parked then redis.call('SADD', KEYS[4], ARGV[3]) end
return flags`;

// KEYS: the delivery queue's wait list. ARGV: endpoint, how many of the next jobs to read, the
// prefix of the queue's job keys. 1 if one of the next jobs the queue hands out (the tail of
// the list) belongs to another endpoint (or to none it names), else 0.
const OTHERS_QUEUED = `
local ids = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[2]), -1)
for i = #ids, 1, -1 do
  local data = redis.call('HGET', ARGV[3] .. ids[i], 'data')
  if data then
    local ok, job = pcall(cjson.decode, data)
    if not ok or type(job) ~= 'table' or job.endpointId ~= ARGV[1] then return 1 end
  end
end
return 0`;

/**
 * The scripts, as commands of the Redis client (`defineCommand`): ioredis sends a script's
 * text once per connection and its SHA1 after that (EVALSHA, with EVAL again on NOSCRIPT), so
 * Redis does not hash and look up 1 KB of Lua on every call, and several go in one pipeline.
 */
const SCRIPTS = {
  endpointSlotsAcquireOrPark: { numberOfKeys: 5, lua: ACQUIRE_OR_PARK },
  endpointSlotsReleaseOrNext: { numberOfKeys: 4, lua: RELEASE_OR_NEXT },
  endpointSlotsTakeNext: { numberOfKeys: 4, lua: TAKE_NEXT },
  endpointSlotsKick: { numberOfKeys: 4, lua: KICK },
  endpointSlotsParkIfFull: { numberOfKeys: 5, lua: PARK_IF_FULL },
  endpointSlotsOthersQueued: { numberOfKeys: 1, lua: OTHERS_QUEUED },
} as const;

type ScriptCall = (...args: (string | number)[]) => Promise<unknown>;
/** A Redis client (or pipeline) with the {@link SCRIPTS} defined on it. */
type WithScripts<T> = T & Record<keyof typeof SCRIPTS, ScriptCall>;

/**
 * A parked job popped to go back to the queue: its data carries its place in its endpoint's
 * line (`parkPlace`), so that, should it find every slot taken again, it waits where it stood,
 * ahead of the jobs that arrived after it, not at the end.
 */
function handedBack(
  jobId: string,
  json: string,
  place: number | string | undefined,
): ParkedJob {
  const data = JSON.parse(json) as DeliveryJob;
  const parkPlace = Number(place);
  return {
    jobId,
    data: Number.isSafeInteger(parkPlace) ? { ...data, parkPlace } : data,
  };
}

/** A job waiting for a slot of its endpoint, by its Bull job id. */
export interface ParkedJob {
  jobId: string;
  data: DeliveryJob;
}

/** A parked job a slot takes, and how many of its endpoint's jobs were left parked. */
export interface TakenJob {
  job: ParkedJob;
  parked: number;
}

/** What {@link EndpointSlots.releaseOrNext} did with a slot. */
export type Released =
  | ({ kind: 'next' } & TakenJob)
  | { kind: 'handoff'; job: ParkedJob }
  | { kind: 'freed' };

/**
 * Bounds the deliveries in flight to one endpoint across every worker (slots are leases in a
 * Redis sorted set: a worker that dies frees its slot when the lease ends), and parks the jobs
 * that find every slot taken: a parked job costs one Redis call and no Postgres write, and is
 * handed to the next slot that frees, in arrival order. The holder of a slot therefore keeps
 * working through its endpoint's parked jobs; whoever frees the last slot while jobs are
 * parked hands one back to the queue, so parked jobs never wait for a holder that is gone. A
 * holder yields its slot after a turn of jobs, handing the next parked job back to the queue:
 * worker slots go round the endpoints, so busy endpoints cannot keep every worker slot.
 */
export class EndpointSlots {
  constructor(
    private readonly redis: Redis,
    private readonly limit: number,
    private readonly leaseMs: number,
    /** Key prefix (`BULL_PREFIX`): services sharing a Redis keep their slots apart. */
    private readonly prefix = 'bull',
  ) {
    for (const [name, definition] of Object.entries(SCRIPTS))
      if (!(name in redis)) redis.defineCommand(name, definition);
  }

  private get scripts(): WithScripts<Redis> {
    return this.redis as WithScripts<Redis>;
  }

  private keys(endpointId: string) {
    return [
      `${this.prefix}:endpoint-inflight:${endpointId}`,
      `${this.prefix}:endpoint-parked:${endpointId}`,
      `${this.prefix}:endpoint-parked-data:${endpointId}`,
      `${this.prefix}:endpoints-with-parked`,
    ];
  }

  /**
   * Takes a slot for `member`, or parks the job. Resolves with `false` (parked), or the number
   * of the endpoint's jobs parked at that moment (the slot is taken).
   */
  async acquireOrPark(
    endpointId: string,
    member: string,
    job: ParkedJob,
  ): Promise<false | { parked: number }> {
    const now = Date.now();
    const result = await this.scripts.endpointSlotsAcquireOrPark(
      ...this.keys(endpointId),
      `${this.prefix}:endpoint-parked-seq`,
      now,
      now + this.leaseMs,
      member,
      this.limit,
      this.leaseMs * 2,
      job.jobId,
      JSON.stringify(job.data),
      endpointId,
      job.data.parkPlace ?? '',
    );
    return result === 0 ? false : { parked: Number(result) - 1 };
  }

  /**
   * For jobs about to be queued, by endpoint: parks those that would find every slot of their
   * endpoint taken (all but as many as there are free slots), so that they cost no job cycle in
   * a worker. One pipeline for every endpoint. Resolves with a flag per job, in the order of each
   * endpoint's jobs: true for those the queue should still get. Idempotent: a job parked already
   * is not parked again, nor queued.
   */
  async parkIfFull(
    groups: ReadonlyMap<string, readonly ParkedJob[]>,
  ): Promise<Map<string, boolean[]>> {
    const pipeline = this.redis.pipeline() as WithScripts<ChainableCommander>;
    const now = Date.now();
    for (const [endpointId, jobs] of groups) {
      void pipeline.endpointSlotsParkIfFull(
        ...this.keys(endpointId),
        `${this.prefix}:endpoint-parked-seq`,
        now,
        this.limit,
        endpointId,
        ...jobs.flatMap((job) => [
          job.jobId,
          JSON.stringify(job.data),
          job.data.parkPlace ?? '',
        ]),
      );
    }
    const replies = (await pipeline.exec()) ?? [];
    const flags = new Map<string, boolean[]>();
    [...groups.keys()].forEach((endpointId, i) => {
      const [error, reply] = replies[i] ?? [new Error('no reply')];
      if (error) throw error;
      flags.set(
        endpointId,
        (reply as number[]).map((flag) => flag === 1),
      );
    });
    return flags;
  }

  /**
   * `take`: keeps the slot of `member` for the next parked job of the endpoint (its lease
   * renewed), else frees it. `free`: frees it, and hands the next parked job back to the
   * queue if nobody else holds a slot. `yield`: frees it and hands the next parked job back
   * to the queue (behind the jobs of other endpoints: a holder takes turns).
   */
  async releaseOrNext(
    endpointId: string,
    member: string,
    mode: 'take' | 'free' | 'yield',
  ): Promise<Released> {
    const now = Date.now();
    const reply = (await this.scripts.endpointSlotsReleaseOrNext(
      ...this.keys(endpointId),
      member,
      now,
      now + this.leaseMs,
      mode,
      endpointId,
    )) as [number, string?, string?, (number | string)?];
    if (reply[0] === 0) return { kind: 'freed' };
    if (reply[0] === 2)
      return {
        kind: 'handoff',
        job: handedBack(reply[1]!, reply[2]!, reply[3]),
      };
    const job = {
      jobId: reply[1]!,
      data: JSON.parse(reply[2]!) as DeliveryJob,
    };
    return { kind: 'next', job, parked: Number(reply[3]) };
  }

  /**
   * The endpoint's next parked job, for the slot `member` holds to serve after the one it is
   * sending, and how many are left parked. The slot's lease is renewed for `leaseMs`, which
   * must cover the rest of the send in progress and the whole of the next one (the worker's
   * lease of a claim taken ahead): a shorter one could end during the next send and let
   * another worker take the slot, one request more than the limit. Undefined when none is
   * parked or the slot is not held (its lease ended); the slot is left as it is:
   * `releaseOrNext` frees it after the send.
   */
  async takeNext(
    endpointId: string,
    member: string,
    leaseMs: number,
  ): Promise<TakenJob | undefined> {
    const reply = (await this.scripts.endpointSlotsTakeNext(
      ...this.keys(endpointId),
      member,
      Date.now() + leaseMs,
      endpointId,
    )) as [string?, string?, number?];
    if (reply.length !== 3) return undefined;
    return {
      job: { jobId: reply[0]!, data: JSON.parse(reply[1]!) as DeliveryJob },
      parked: reply[2]!,
    };
  }

  /**
   * Whether one of the next `lookahead` jobs the delivery queue hands out belongs to another
   * endpoint than `endpointId` (a job that names none counts as another's): then a slot holder
   * of `endpointId` that has had its turn should yield its worker. Jobs of its own endpoint
   * waiting there never make it yield: they would only wait for its slots again.
   */
  async othersQueued(endpointId: string, lookahead: number): Promise<boolean> {
    const jobKey = `${this.prefix}:${DELIVERY_QUEUE}:`;
    const reply = await this.scripts.endpointSlotsOthersQueued(
      `${jobKey}wait`,
      endpointId,
      lookahead,
      jobKey,
    );
    return reply === 1;
  }

  /** Endpoints with parked jobs whose slots are all free or expired: one job each, to re-queue. */
  async orphans(): Promise<ParkedJob[]> {
    const endpoints = await this.redis.smembers(
      `${this.prefix}:endpoints-with-parked`,
    );
    const found: ParkedJob[] = [];
    for (const endpointId of endpoints) {
      const reply = (await this.scripts.endpointSlotsKick(
        ...this.keys(endpointId),
        Date.now(),
        endpointId,
      )) as string[];
      if (reply.length === 3)
        found.push(handedBack(reply[0], reply[1], reply[2]));
    }
    return found;
  }

  /** Adds to `pipeline` the check whether a job is parked (its reply: a score, or null). */
  queueParkedCheck(
    pipeline: ChainableCommander,
    endpointId: string,
    jobId: string,
  ) {
    pipeline.zscore(this.keys(endpointId)[1], jobId);
  }
}
