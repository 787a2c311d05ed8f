import { INestApplication } from '@nestjs/common';
import { randomUUID } from 'crypto';
import { DataSource } from 'typeorm';
import {
  getTransactionAwareQueueToken,
  IsolationLevel,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import { dbQuery } from './support/db';
import { onMariaDb, testDataSourceOptions, uniqueName } from './support/env';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
  waitFor,
} from './support/lib-app';
import { createOutboxTable } from './support/outbox-table';
import { watchProcessFailures } from './support/process-failures';

/*
 * MariaDB-only: the relay's background statements (claim, marks, retention DELETE) against
 * concurrent application transactions at every isolation level, two applications (two relays)
 * on one outbox table, and job payloads near and over max_allowed_packet.
 */
const describeMariaDb = onMariaDb ? describe : describe.skip;
const OUTBOX = 'a7_relay_outbox';

describeMariaDb(
  'adversarial7 (MariaDB): relays and application transactions',
  () => {
    const durableName = uniqueName('a7r-durable');
    const failures = watchProcessFailures();
    const apps: INestApplication[] = [];
    let admin: DataSource;

    beforeAll(async () => {
      await createOutboxTable(OUTBOX);
      admin = new DataSource(testDataSourceOptions());
      await admin.initialize();
      for (let i = 0; i < 2; i++) {
        apps.push(
          await createLibApp({
            queues: [{ name: durableName, durable: true }],
            options: {
              outbox: {
                tableName: OUTBOX,
                fastPathTimeoutMs: 300,
                markBatchDelayMs: 1,
                // Every row is the relays' at once (they race the fast path), polls every 5 ms
                // (retention runs every 60 polls), rows are deleted 50 ms after dispatch.
                relay: {
                  enabled: true,
                  graceMs: 0,
                  pollIntervalMs: 5,
                  retentionMs: 50,
                  batchSize: 7,
                },
              },
            },
            poolSize: 10,
            listen: false,
          }),
        );
      }
    });

    afterAll(async () => {
      await closeLibApp(apps[1], []);
      await closeLibApp(apps[0], [durableName]);
      await admin?.destroy();
      failures.dispose();
    });

    afterEach(() => {
      expect(failures.unhandledRejections).toEqual([]);
      expect(failures.uncaughtExceptions).toEqual([]);
    });

    const host = (i: number) => apps[i].get(TransactionHost);
    const queue = (i: number): TransactionAwareQueue<any> =>
      apps[i].get(getTransactionAwareQueueToken(durableName));

    async function committed(label: string): Promise<boolean> {
      return (
        (
          await dbQuery(
            admin,
            'SELECT 1 FROM tx_spec_orders WHERE label = $1',
            [label],
          )
        ).length > 0
      );
    }

    it('should fail no application transaction because of two relays claiming, marking and deleting rows, and deliver every committed job once', async () => {
      const levels: (IsolationLevel | undefined)[] = [
        undefined,
        'READ UNCOMMITTED',
        'READ COMMITTED',
        'REPEATABLE READ',
        'SERIALIZABLE',
      ];
      const tag = uniqueName('a7r-load');
      const errors: string[] = [];
      const jobs: { label: string; ids: string[]; kept: boolean }[] = [];
      let next = 0;
      const worker = async () => {
        while (next < 120) {
          const n = next++;
          const app = n % 2;
          const label = `${tag}-${n}`;
          const ids: string[] = [];
          const fails = n % 5 === 4;
          const outcome = await host(app)
            .withTransaction(
              async () => {
                await dbQuery(
                  host(app).manager,
                  'INSERT INTO tx_spec_orders (id, label, "createdAt") VALUES ($1, $2, now())',
                  [randomUUID(), label],
                );
                ids.push(await queue(app).add({ label, k: 1 }));
                // (The application itself reads nothing shared: a deadlock here can only come
                // from the library's statements.)
                await new Promise((resolve) => setTimeout(resolve, n % 3));
                ids.push(await queue(app).add({ label, k: 2 }));
                if (fails) throw new Error('refused');
              },
              { isolationLevel: levels[n % levels.length] },
            )
            .then(
              () => 'committed',
              (e: Error) => e.message,
            );
          if (outcome !== 'committed' && outcome !== 'refused')
            errors.push(`${levels[n % levels.length]}: ${outcome}`);
          jobs.push({ label, ids, kept: outcome === 'committed' });
        }
      };
      await Promise.all(Array.from({ length: 6 }, worker));

      for (const j of jobs) expect(await committed(j.label)).toBe(j.kept);
      const durableBull = bullQueue(apps[0], durableName);
      await waitFor(
        async () => {
          for (const j of jobs.filter((x) => x.kept))
            for (const id of j.ids)
              if (!(await inRedis(durableBull, id))) return false;
          return true;
        },
        'every committed durable job in Redis',
        10_000,
      );
      for (const j of jobs.filter((x) => !x.kept))
        for (const id of j.ids)
          expect(await inRedis(durableBull, id)).toBe(false);
      // Nothing left pending; no row in the outbox of a rolled-back transaction.
      const pending = () =>
        admin.query(
          `SELECT id, relay_attempts, last_error, CAST(available_at AS CHAR) AS available_at,
                CAST(created_at AS CHAR) AS created_at, CAST(UTC_TIMESTAMP(6) AS CHAR) AS now
           FROM ${OUTBOX} WHERE dispatched_at IS NULL`,
        );
      await waitFor(
        async () => (await pending()).length === 0,
        'no pending outbox row',
        5_000,
      ).catch(async () => {
        expect(await pending()).toEqual([]);
      });
      const total = jobs.filter((x) => x.kept).length * 2;
      const counts = await durableBull.getJobCounts();
      expect(counts.waiting + counts.delayed + counts.active).toBe(total);
      // Last: the application transactions that failed (deadlocks with the library's own
      // background statements: the fast path's marks, the relays' claims, marks and retention).
      expect(errors).toEqual([]);
    });

    it('should never relay the outbox row of a transaction still open (graceMs 0) and drop it on rollback, at READ UNCOMMITTED too', async () => {
      const label = uniqueName('a7r-open');
      let id = '';
      await host(0)
        .withTransaction(
          async () => {
            id = await queue(0).add({ label });
            // The relays poll every 5 ms while this transaction is open.
            await new Promise((resolve) => setTimeout(resolve, 400));
            expect(await inRedis(bullQueue(apps[0], durableName), id)).toBe(
              false,
            );
            throw new Error('rolled back');
          },
          { isolationLevel: 'READ UNCOMMITTED' },
        )
        .catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(await inRedis(bullQueue(apps[0], durableName), id)).toBe(false);
    });

    it('should deliver a durable job of ~3 MB of quotes, backslashes and accents intact (fast path or relay)', async () => {
      const label = uniqueName('a7r-big');
      // ~3 MB of text, ~10 MB once escaped as JSON and as an SQL literal (limit: 16 MB).
      const big = 'é"\\'.repeat(1_000_000);
      let id = '';
      await host(0).withTransaction(async () => {
        id = await queue(0).add({ label, big });
      });
      const durableBull = bullQueue(apps[0], durableName);
      await waitFor(() => inRedis(durableBull, id), 'the big job', 10_000);
      const job = await durableBull.getJob(id);
      expect(job!.data.big === big).toBe(true);
    });

    it('should keep rows and jobs together when a durable job over max_allowed_packet is refused and the scope goes on', async () => {
      const [{ max }] = await admin.query('SELECT @@max_allowed_packet AS max');
      const label = uniqueName('a7r-huge');
      const seen: string[] = [];
      const ids: string[] = [];
      const outcome = await host(0)
        .withTransaction(async () => {
          await dbQuery(
            host(0).manager,
            'INSERT INTO tx_spec_orders (id, label, "createdAt") VALUES ($1, $2, now())',
            [randomUUID(), `${label}-1`],
          );
          ids.push(await queue(0).add({ label: `${label}-1` }));
          await queue(0)
            .add({ label: `${label}-huge`, huge: 'x'.repeat(Number(max) + 1) })
            .then(
              (hugeId) => seen.push(`added ${hugeId}`),
              (e: Error) => seen.push(`${e.constructor.name}: ${e.message}`),
            );
          await dbQuery(
            host(0).manager,
            'INSERT INTO tx_spec_orders (id, label, "createdAt") VALUES ($1, $2, now())',
            [randomUUID(), `${label}-2`],
          ).catch((e: Error) => seen.push(e.constructor.name));
        })
        .then(
          () => 'committed',
          (e: Error) => `${e.constructor.name}: ${e.message}`,
        );
      expect(seen[0]).not.toMatch(/^added/);
      const kept = [
        await committed(`${label}-1`),
        await committed(`${label}-2`),
      ];
      // Both rows or none, and the job of row 1 iff it committed.
      expect(kept[0]).toBe(kept[1]);
      expect(outcome === 'committed').toBe(kept[0]);
      const durableBull = bullQueue(apps[0], durableName);
      if (kept[0])
        await waitFor(() => inRedis(durableBull, ids[0]), 'job 1', 5_000);
      else expect(await inRedis(durableBull, ids[0])).toBe(false);
      // A caller that got a rejection must be told why, by a library error or the driver's.
      if (!kept[0]) expect(outcome).toMatch(/^UnexpectedRollbackError: /);
    });
  },
);
