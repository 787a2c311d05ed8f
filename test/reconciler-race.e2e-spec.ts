import { DeliveryReconciler } from '../src/deliveries/delivery-reconciler';
import { deliveryJobId } from '../src/deliveries/delivery-queue';
import { deliveryApi } from './support/delivery-api';
import { E2eApp, startE2eApp } from './support/harness';

/**
 * The reconciler reads the deliveries that look lost in Postgres, then asks Redis whether
 * their jobs exist. A delivery a worker took in between (a parked job popped, claimed and
 * sent) has no job any more, and is no longer lost: it must not be enqueued again. Under
 * overload the oldest due deliveries, the ones the reconciler reads first, are exactly those
 * the workers are taking; each needless job costs a worker a job cycle.
 */
describe('when a delivery the reconciler found is taken before it checks Redis', () => {
  let svc: E2eApp;
  let reconciler: DeliveryReconciler;
  /** Runs once, just before the reconciler's Redis check is sent. */
  let beforeCheck: (() => Promise<unknown>) | undefined;

  beforeAll(async () => {
    // An API process: no worker and no reconciler rounds of its own; the spec calls it.
    svc = await startE2eApp({ role: 'api', outboxRelay: false });
    reconciler = svc.app.get(DeliveryReconciler);
    const client = svc.queue.client;
    const pipeline = client.pipeline.bind(client);
    jest.spyOn(client, 'pipeline').mockImplementation((...args) => {
      const p = pipeline(...(args as []));
      const exec = p.exec.bind(p);
      p.exec = (async (...execArgs: unknown[]) => {
        const hook = beforeCheck;
        beforeCheck = undefined;
        await hook?.();
        return exec(...(execArgs as []));
      }) as typeof p.exec;
      return p;
    });
  });

  afterAll(async () => {
    jest.restoreAllMocks();
    await svc?.close();
  });

  /** A pending delivery due for a while, without a job (as if Bull lost it). */
  async function lostDelivery(): Promise<string> {
    const client = deliveryApi(svc, await svc.createAccount());
    await client.createEndpoint('http://127.0.0.1:9/hook');
    const event = await client.publish('trip.delayed', { n: 1 });
    const [{ id }] = await svc.dataSource.query(
      'SELECT id FROM deliveries WHERE event_id = $1',
      [event.id],
    );
    await svc.dataSource.query(
      `UPDATE deliveries SET next_attempt_at = now() - interval '1 hour' WHERE id = $1`,
      [id],
    );
    await svc.queue.obliterate({ force: true });
    return id;
  }

  /**
   * Whether the reconciler enqueued the delivery, as it found it: a job for the attempt after
   * `attempts` (other specs' deliveries may get jobs too).
   */
  async function hasJob(id: string, attempts: number): Promise<boolean> {
    return (await svc.queue.getJob(deliveryJobId(id, attempts + 1))) !== null;
  }

  it('should enqueue a delivery still pending and due without a job', async () => {
    const id = await lostDelivery();
    await reconciler.reconcile();
    expect(await hasJob(id, 0)).toBe(true);
  });

  it('should not enqueue a pending delivery that a worker claimed in the meantime', async () => {
    const id = await lostDelivery();
    beforeCheck = () =>
      svc.dataSource.query(
        `UPDATE deliveries SET status = 'sending', attempt_count = attempt_count + 1,
           locked_until = now() + interval '1 minute' WHERE id = $1`,
        [id],
      );
    await reconciler.reconcile();
    expect(await hasJob(id, 0)).toBe(false);
  });

  it('should not enqueue a pending delivery that was sent and finished in the meantime', async () => {
    const id = await lostDelivery();
    beforeCheck = () =>
      svc.dataSource.query(
        `UPDATE deliveries SET status = 'succeeded', attempt_count = attempt_count + 1
          WHERE id = $1`,
        [id],
      );
    await reconciler.reconcile();
    expect(await hasJob(id, 0)).toBe(false);
  });

  it('should not enqueue a lease-expired delivery whose lease was taken again in the meantime', async () => {
    const id = await lostDelivery();
    await svc.dataSource.query(
      `UPDATE deliveries SET status = 'sending', attempt_count = 1,
         locked_until = now() - interval '1 minute' WHERE id = $1`,
      [id],
    );
    beforeCheck = () =>
      svc.dataSource.query(
        `UPDATE deliveries SET attempt_count = 2,
           locked_until = now() + interval '1 minute' WHERE id = $1`,
        [id],
      );
    await reconciler.reconcile();
    expect(await hasJob(id, 1)).toBe(false);
  });

  it('should still enqueue a lease-expired delivery whose lease stays expired', async () => {
    const id = await lostDelivery();
    await svc.dataSource.query(
      `UPDATE deliveries SET status = 'sending', attempt_count = 1,
         locked_until = now() - interval '1 minute' WHERE id = $1`,
      [id],
    );
    await reconciler.reconcile();
    expect(await hasJob(id, 1)).toBe(true);
  });
});
