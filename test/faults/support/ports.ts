import { readFileSync } from 'fs';
import { AddressInfo, createServer } from 'net';

/**
 * The kernel's range of ephemeral ports (`net.ipv4.ip_local_port_range`): every outgoing
 * connection of every process on the machine takes its local port from it.
 */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync(
      '/proc/sys/net/ipv4/ip_local_port_range',
      'utf8',
    )
      .trim()
      .split(/\s+/)
      .map(Number);
    if (low > 0 && high >= low) return [low, high];
  } catch {
    // not Linux: the IANA range
  }
  return [49152, 65535];
}

/** Ports of the services a machine may run (Postgres, MariaDB, Redis, brokers, the service). */
const RESERVED = new Set([
  1883, 3000, 3001, 3306, 4222, 5432, 5672, 6379, 6380, 8222, 9090, 15672,
]);

/** A port the kernel picks (from the ephemeral range). */
async function anyPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Whether a loopback listener can take `port` right now. */
function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A loopback TCP port nothing listens on right now, for a server a spec starts in another
 * process (redis-server, the service), often more than once on the same port (kill, restart).
 * NOTE: picked at random below the ephemeral range, not by binding port 0: a port from that
 * range, once released, can be taken as the local port of any outgoing connection (the jest
 * runs beside this one open hundreds), and the server's bind, or its restart, then fails.
 */
export async function freePort(): Promise<number> {
  const [ephemeralLow] = ephemeralRange();
  const low = 10_000;
  const high = Math.min(ephemeralLow, 65_536) - 1;
  if (high - low < 1_000) return anyPort();
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = low + Math.floor(Math.random() * (high - low + 1));
    if (RESERVED.has(port)) continue;
    if (await canListen(port)) return port;
  }
  throw new Error(`no free loopback port in ${low}-${high}`);
}
