import { DeliveryReconciler } from '../src/deliveries/delivery-reconciler';
import { deliveryJobId } from '../src/deliveries/delivery-queue';
import { deliveryApi } from './support/delivery-api';
import { E2eApp, startE2eApp } from './support/harness';

/**
 * The reconciler reads the due deliveries a page at a time. Under a backlog longer than a page
 * the first page holds deliveries that only wait in the queue: a reconciler that starts every
 * round from the oldest due delivery never reaches a lost one behind them (until the workers
 * have sent the whole page), and one that reads a single page per round re-enqueues a backlog
 * Redis lost a page per interval (1,000 per 30 s by default, for a worker that sends 600/s).
 */
describe('when the due backlog is longer than a page of the reconciler', () => {
  let svc: E2eApp;
  beforeAll(async () => {
    // An API process: no worker and no reconciler rounds of its own; the spec calls them.
    svc = await startE2eApp({ role: 'api', outboxRelay: false });
  });

  afterAll(async () => {
    await svc?.close();
  });

  /** A reconciler as a process that has just started has one: at the start of a lap. */
  function freshReconciler(): DeliveryReconciler {
    const app = svc.app.get(DeliveryReconciler);
    return new DeliveryReconciler(
      app['tx'],
      app['config'],
      app['queue'],
      app['slots'],
    );
  }

  /**
   * `n` pending deliveries without a job, due in this order (a second apart) before any other
   * delivery in the database, the queue emptied; their ids, oldest first.
   */
  async function dueDeliveries(n: number): Promise<string[]> {
    const client = deliveryApi(svc, await svc.createAccount());
    await client.createEndpoint('http://127.0.0.1:9/hook');
    const events = [];
    for (let i = 0; i < n; i++) {
      events.push((await client.publish('trip.delayed', { n: i })).id);
    }
    const rows: { id: string; n: string }[] = await svc.dataSource.query(
      `WITH oldest AS (
         SELECT coalesce(min(next_attempt_at), now()) - interval '1 day' AS at
           FROM deliveries WHERE status = 'pending'
       ), due AS (
         UPDATE deliveries d
            SET next_attempt_at = oldest.at + make_interval(secs => e.n)
           FROM unnest($1::uuid[]) WITH ORDINALITY AS e(id, n), oldest
          WHERE d.event_id = e.id
          RETURNING d.id, e.n)
       SELECT id, n FROM due`,
      [events],
    );
    await svc.queue.obliterate({ force: true });
    return rows.sort((a, b) => Number(a.n) - Number(b.n)).map((row) => row.id);
  }

  /** Which of the deliveries have a job for their first attempt. */
  async function withJob(ids: string[]): Promise<string[]> {
    const found = [];
    for (const id of ids) {
      if (await svc.queue.getJob(deliveryJobId(id, 1))) found.push(id);
    }
    return found;
  }

  it('should reach a lost delivery behind deliveries that only wait in the queue, a page per round', async () => {
    const ids = await dueDeliveries(9);
    const queued = ids.slice(0, 6);
    const lost = ids.slice(6);
    for (const id of queued) {
      const [{ endpoint_id: endpointId }] = await svc.dataSource.query(
        'SELECT endpoint_id FROM deliveries WHERE id = $1',
        [id],
      );
      await svc.queue.add(
        { deliveryId: id, endpointId },
        { jobId: deliveryJobId(id, 1) },
      );
    }
    const reconciler = freshReconciler();
    // Pages of two: three rounds read the six queued ones, and stop there (other specs'
    // lease-expired `sending` deliveries, which the first page reads too, may be enqueued).
    for (let round = 0; round < 3; round++) {
      await reconciler.reconcile(2);
      expect(await withJob(lost)).toEqual([]);
    }
    // The fourth goes on from there, and on while its pages find lost ones.
    expect(await reconciler.reconcile(2)).toBeGreaterThanOrEqual(lost.length);
    expect(await withJob(ids)).toEqual(ids);
  });

  it('should re-enqueue a backlog Redis lost in one round, page after page', async () => {
    const ids = await dueDeliveries(7);
    expect(await freshReconciler().reconcile(2)).toBeGreaterThanOrEqual(
      ids.length,
    );
    expect(await withJob(ids)).toEqual(ids);
  });

  it('should begin a new lap after its last page', async () => {
    const ids = await dueDeliveries(3);
    const reconciler = freshReconciler();
    await reconciler.reconcile(1000);
    await svc.queue.obliterate({ force: true });
    // The round above read every due delivery (a short page): the next one starts over.
    expect(await reconciler.reconcile(1000)).toBeGreaterThanOrEqual(ids.length);
    expect(await withJob(ids)).toEqual(ids);
  });
});
