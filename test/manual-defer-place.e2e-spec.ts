/**
 * A manual attempt that finds its delivery leased waits in a new, delayed job (`busySince`).
 * A manual job that was parked and handed back carries its place in its endpoint's line
 * (`parkPlace`); the job that waits out the lease must not inherit it, or it would come back
 * at the head of the line every time it found the delivery still busy.
 */
import { DELIVERY_JOB_OPTIONS } from '../src/deliveries/delivery-queue';
import { deliveryApi } from './support/delivery-api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

jest.setTimeout(60_000);

describe('a manual job deferred while its delivery is leased', () => {
  let svc: E2eApp;
  let receiver: Receiver;
  let client: ReturnType<typeof deliveryApi>;

  beforeAll(async () => {
    svc = await startE2eApp();
    client = deliveryApi(svc, await svc.createAccount('manual-defer-place'));
    receiver = await startReceiver((_n, _got, res) => {
      res.statusCode = 200;
      res.end('ok');
    });
  });

  afterAll(async () => {
    await receiver?.close();
    await svc?.close();
  });

  it('waits in a job of its own, without the place in line of the job it replaces', async () => {
    const endpoint = await client.createEndpoint(receiver.url);
    const event = await client.publish('trip.delayed', { n: 1 });
    const delivery = await client.deliveryWhen(
      event.id,
      (d) => d.status === 'succeeded',
      'the delivery sent',
    );
    // Another worker's lease on the delivery: a manual attempt must wait for it.
    await svc.dataSource.query(
      `UPDATE deliveries SET locked_until = now() + interval '1 minute' WHERE id = $1`,
      [delivery.id],
    );
    const jobId = `${delivery.id}:manual-handed-back`;
    await svc.queue.add(
      {
        deliveryId: delivery.id,
        endpointId: endpoint.id,
        trigger: 'manual',
        parkPlace: 7,
      },
      { ...DELIVERY_JOB_OPTIONS, jobId },
    );
    const deferred = await eventually(async () => {
      const delayed = await svc.queue.getDelayed();
      return delayed.find(
        (job) =>
          job.data.deliveryId === delivery.id &&
          job.data.busySince !== undefined,
      );
    }, 'the deferred manual job');
    expect(String(deferred.id)).toMatch(
      new RegExp(`^${delivery.id}:manual-handed-back~\\d+$`),
    );
    expect(deferred.data).toEqual({
      deliveryId: delivery.id,
      endpointId: endpoint.id,
      trigger: 'manual',
      busySince: expect.any(Number),
    });
    await deferred.remove();
  });
});
