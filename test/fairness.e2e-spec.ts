import { deliveryApi } from './support/delivery-api';
import { E2eApp, eventually, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

/** Endpoints besides the flooded one. */
const OTHERS = 9;
/** Events each of the others gets. */
const EACH = 2;
/** Events the flooded endpoint gets: far more than the others together. */
const FLOOD = 200;
/** How long the flooded endpoint holds each request: its backlog takes seconds to drain. */
const HOLD_MS = 100;
/**
 * The flooded endpoint answers nothing until every event of the others is published: the
 * flood cannot drain while the test is still publishing (however slow the machine), so what
 * reaches it before the others are done is only what the scheduler let through.
 */
let openGate: () => void;
const gate = new Promise<void>((resolve) => (openGate = resolve));
const PER_ENDPOINT = 4;

describe('when one of ten endpoints is flooded', () => {
  let svc: E2eApp;
  let flooded: Receiver;
  let others: Receiver;
  const timers: NodeJS.Timeout[] = [];
  /** Flooded requests received when the last delivery to the others arrived. */
  let floodedWhenOthersDone: number | undefined;

  beforeAll(async () => {
    svc = await startE2eApp({
      perEndpointConcurrency: PER_ENDPOINT,
      workerConcurrency: 20,
      deliveryTimeoutMs: 30_000,
    });
    flooded = await startReceiver((_n, _r, res) => {
      void gate.then(() =>
        timers.push(setTimeout(() => res.end('ok'), HOLD_MS)),
      );
    });
    others = await startReceiver((_n, _r, res) => {
      if (others.received.length === OTHERS * EACH)
        floodedWhenOthersDone ??= flooded.received.length;
      res.end('ok');
    });
  });

  afterAll(async () => {
    openGate();
    await svc?.close();
    timers.forEach(clearTimeout);
    await flooded?.close();
    await others?.close();
  });

  it('should deliver to the others while the flood is still draining, each event once', async () => {
    const client = deliveryApi(svc, await svc.createAccount());
    await client.createEndpoint(flooded.url, ['flood']);
    for (let i = 0; i < OTHERS; i++) {
      await client.createEndpoint(`${others.url}?endpoint=${i}`, [
        `other.${i}`,
      ]);
    }
    // The flood is queued first, so a first-in first-out worker would send it all before the
    // others.
    for (let i = 0; i < FLOOD; i += 20) {
      await Promise.all(
        Array.from({ length: 20 }, (_, j) =>
          client.publish('flood', { n: i + j }),
        ),
      );
    }
    const published: string[] = [];
    for (let round = 0; round < EACH; round++) {
      for (let i = 0; i < OTHERS; i++) {
        published.push((await client.publish(`other.${i}`, { round })).id);
      }
    }
    openGate();
    await eventually(
      () => others.received.length >= OTHERS * EACH,
      'every delivery to the other endpoints',
      30_000,
    );
    // The others did not wait behind the flood: most of it was still to be sent.
    expect(floodedWhenOthersDone).toBeLessThan(FLOOD / 2);
    expect(
      others.received.map((got) => got.headers['webhook-id']).sort(),
    ).toEqual([...published].sort());

    // And the flood is delivered in full, each event once.
    await eventually(
      () => flooded.received.length >= FLOOD,
      'the whole flood',
      60_000,
    );
    const ids = flooded.received.map((got) => got.headers['webhook-id']);
    expect(new Set(ids).size).toBe(FLOOD);
  });
});
