import request from 'supertest';
import { loadConfig } from '../src/config/app-config';
import { EventLoopPressure } from '../src/load-shedding/event-loop-pressure';
import { blockTheLoop } from './support/busy-loop';
import { deliveryApi } from './support/delivery-api';
import { E2eApp, eventually, startE2eApp } from './support/harness';

describe('API_SHED_LOOP_UTILIZATION', () => {
  it('should be on in a process running the API and the worker, off otherwise', () => {
    const keys = { SECRETS_ENCRYPTION_KEYS: 'k:' + 'A'.repeat(43) + '=' };
    expect(loadConfig({ ...keys }).shedLoopUtilization).toBe(90);
    expect(
      loadConfig({ ...keys, PROCESS_ROLE: 'api' }).shedLoopUtilization,
    ).toBe(0);
    expect(
      loadConfig({
        ...keys,
        PROCESS_ROLE: 'api',
        API_SHED_LOOP_UTILIZATION: '80',
      }).shedLoopUtilization,
    ).toBe(80);
    expect(() =>
      loadConfig({ ...keys, API_SHED_LOOP_UTILIZATION: '101' }),
    ).toThrow(
      /API_SHED_LOOP_UTILIZATION.*must be an integer 0\.\.100, got "101"/,
    );
  });
});

describe('when the event loop of the process is never idle', () => {
  let svc: E2eApp;
  let client: ReturnType<typeof deliveryApi>;
  let tripId: string;
  let unblock: (() => void) | undefined;

  beforeAll(async () => {
    svc = await startE2eApp({ shedLoopUtilization: 80 });
    client = deliveryApi(svc, await svc.createAccount());
    const trip = await client
      .api()
      .post('/v1/trips')
      .set(client.auth)
      .send({
        reference: 'SHED-1',
        origin: 'Lyon',
        destination: 'Turin',
        plannedArrival: '2026-12-01T10:00:00Z',
      })
      .expect(201);
    tripId = trip.body.id;
  });

  afterEach(() => unblock?.());

  afterAll(async () => {
    await svc?.close();
  });

  async function events(): Promise<number> {
    const [{ n }] = await svc.dataSource.query(
      'SELECT count(*)::int AS n FROM events',
    );
    return n;
  }

  it('should refuse new events with 503 and Retry-After, and store nothing', async () => {
    const before = await events();
    unblock = blockTheLoop(80);
    const pressure = svc.app.get(EventLoopPressure);
    await eventually(() => pressure.overloaded, 'the loop to be seen busy');
    const refused = [
      await client
        .api()
        .post('/v1/events')
        .set(client.auth)
        .send({ type: 'trip.note', payload: { n: 1 } }),
      await client
        .api()
        .post(`/v1/trips/${tripId}/delays`)
        .set(client.auth)
        .send({ minutes: 5, reason: 'traffic' }),
    ];
    for (const res of refused) {
      expect(res.status).toBe(503);
      expect(res.headers['retry-after']).toBe('1');
      expect(res.body).toMatchObject({
        statusCode: 503,
        message: expect.stringMatching(
          /^The service is overloaded \(its event loop is \d+% busy\) and accepted nothing; retry after 1 s\.$/,
        ),
      });
    }
    expect(await events()).toBe(before);
    // Reads are served: only work for the workers is refused.
    await client.api().get(`/v1/trips/${tripId}`).set(client.auth).expect(200);
  });

  it('should accept them again once the loop keeps up', async () => {
    unblock = blockTheLoop(80);
    const pressure = svc.app.get(EventLoopPressure);
    await eventually(() => pressure.overloaded, 'the loop to be seen busy');
    unblock();
    await eventually(() => !pressure.overloaded, 'the loop to keep up');
    const before = await events();
    await client
      .api()
      .post('/v1/events')
      .set(client.auth)
      .send({ type: 'trip.note', payload: { n: 2 } })
      .expect(201);
    expect(await events()).toBe(before + 1);
  });

  it('should never refuse while it is off', async () => {
    const off = await startE2eApp({ shedLoopUtilization: 0 });
    try {
      const offClient = deliveryApi(off, await off.createAccount());
      unblock = blockTheLoop(80);
      await new Promise((resolve) => setTimeout(resolve, 600));
      expect(off.app.get(EventLoopPressure).overloaded).toBe(false);
      await request(off.url)
        .post('/v1/events')
        .set(offClient.auth)
        .send({ type: 'trip.note', payload: { n: 3 } })
        .expect(201);
    } finally {
      unblock?.();
      await off.close();
    }
  });
});
