import type { RedisClientLike } from './adapters/queue-adapter';
import { QueueUnavailableError } from './errors/queue-unavailable.error';

type Client = RedisClientLike;

/** Clients seen connected at least once (by a check or their `ready` event). */
const everReady = new WeakSet<Client>();
const watched = new WeakSet<Client>();

/**
 * Throws `QueueUnavailableError` at once when the Redis client of a queue (Bull's
 * `queue.client`, BullMQ's connection client) is not connected, so that commands are not left
 * in ioredis's offline queue for the length of an outage. A client that has never been
 * connected yet (Bull creates it on first use) may still connect: commands wait for that first
 * connection. A stand-in queue without a client (testing kit) passes `undefined`, which passes.
 */
export function assertRedisReady(
  client: Client | undefined,
  queueName: string,
): void {
  if (!client) return;
  const status = client.status;
  if (status === 'ready') {
    everReady.add(client);
    return;
  }
  watch(client);
  const connecting =
    status === 'wait' || status === 'connecting' || status === 'connect';
  if (connecting && !everReady.has(client)) return;
  throw new QueueUnavailableError(queueName, status);
}

/**
 * Starts following the connection of a queue's Redis client (done when the queue is set up),
 * so that a client that was connected once is never taken for one still making its first
 * connection, whichever state an outage leaves it in when a flush checks it.
 */
export function watchRedisReadiness(client: Client | undefined): void {
  if (!client) return;
  if (client.status === 'ready') everReady.add(client);
  watch(client);
}

function watch(client: Client): void {
  if (watched.has(client)) return;
  watched.add(client);
  // NOTE: `on`, not `once`: every reconnection says the same, and a listener per client is all.
  client.on('ready', () => everReady.add(client));
}
