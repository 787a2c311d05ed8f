import type { Redis } from 'ioredis';

// KEYS[1]: the endpoint's in-flight set; ARGV: now, lease end, member, limit, key ttl (ms).
const ACQUIRE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0`;

/**
 * Bounds the deliveries in flight to one endpoint across every worker, so that one slow or
 * failing endpoint cannot take all of the workers' concurrency. Slots are leases in a Redis
 * sorted set: a worker that dies frees its slot when the lease ends.
 */
export class EndpointLimiter {
  constructor(
    private readonly redis: Redis,
    private readonly limit: number,
    private readonly leaseMs: number,
    /** Key prefix (`BULL_PREFIX`): services sharing a Redis keep their slots apart. */
    private readonly prefix = 'bull',
  ) {}

  private key(endpointId: string) {
    return `${this.prefix}:endpoint-inflight:${endpointId}`;
  }

  /** Takes a slot for `member`; false when the endpoint is at its limit. */
  async acquire(endpointId: string, member: string): Promise<boolean> {
    const now = Date.now();
    const result = await this.redis.eval(
      ACQUIRE,
      1,
      this.key(endpointId),
      now,
      now + this.leaseMs,
      member,
      this.limit,
      this.leaseMs * 2,
    );
    return result === 1;
  }

  /** Frees the slot of `member`. */
  async release(endpointId: string, member: string): Promise<void> {
    await this.redis.zrem(this.key(endpointId), member);
  }
}
