/**
 * The child of {@link InjectorProcess}: injects deliveries when asked, at a low CPU priority
 * (its own and its Postgres backend's), so that on one machine the load generator takes the
 * CPU the service leaves, not the CPU it needs. Argv: database URL, Redis URL, endpoint ids;
 * env: the service's `PER_ENDPOINT_CONCURRENCY`.
 * Messages: `{ counts }` (deliveries per endpoint) answered with `{ injected }`; `'close'`.
 */
import { setPriority } from 'os';
import { Client } from 'pg';
import { DeliveryInjector } from './injector';

/** The niceness of the injector and of its Postgres backend (`INJECTOR_NICE`). */
const NICE = Number(process.env.INJECTOR_NICE ?? 10);

async function main() {
  const [dbUrl, redisUrl, ...endpointIds] = process.argv.slice(2);
  setPriority(NICE);
  const client = new Client({ connectionString: dbUrl });
  await client.connect();
  const { rows } = await client.query<{ pid: number }>(
    'SELECT pg_backend_pid() AS pid',
  );
  setPriority(rows[0].pid, NICE);
  const db = {
    query: async (sql: string, params?: unknown[]) =>
      (await client.query(sql, params as any[])).rows,
  };
  const injectors = endpointIds.map(
    (id) =>
      new DeliveryInjector(
        db,
        redisUrl,
        id,
        Number(process.env.PER_ENDPOINT_CONCURRENCY),
      ),
  );
  let work = Promise.resolve();
  process.on(
    'message',
    (message: { counts: number[]; ballast?: boolean } | 'close') => {
      work = work.then(async () => {
        if (message === 'close') {
          await Promise.all(injectors.map((injector) => injector.close()));
          await client.end();
          process.exit(0);
        }
        try {
          // One after the other: they share one client (and its niced backend).
          for (const [i, n] of message.counts.entries())
            await injectors[i].inject(n, message.ballast);
          process.send!({ injected: message.counts, ballast: message.ballast });
        } catch (error) {
          process.send!({ error: String(error) });
        }
      });
    },
  );
  process.send!('ready');
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
