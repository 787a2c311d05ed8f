import type { Queue } from 'bull';
import { QueueUnavailableError } from './errors/queue-unavailable.error';

type Client = Queue['client'];

/** Clients seen connected at least once (by a check or their `ready` event). */
const everReady = new WeakSet<Client>();
const watched = new WeakSet<Client>();

/**
 * Throws `QueueUnavailableError` at once when the Redis client of `queue` is not connected, so
 * that commands are not left in ioredis's offline queue for the length of an outage. A client
 * that has never been connected yet (Bull creates it on first use) may still connect: commands
 * wait for that first connection. A stand-in queue without a client (testing kit) passes.
 */
export function assertRedisReady(queue: Queue, queueName: string): void {
  if (!('client' in queue)) return;
  const client = queue.client;
  const status = client.status;
  if (status === 'ready') {
    everReady.add(client);
    return;
  }
  if (!watched.has(client)) {
    watched.add(client);
    client.once('ready', () => everReady.add(client));
  }
  const connecting =
    status === 'wait' || status === 'connecting' || status === 'connect';
  if (connecting && !everReady.has(client)) return;
  throw new QueueUnavailableError(queueName, status);
}
