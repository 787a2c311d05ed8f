/**
 * Adversarial (round 5): event payloads are stored and delivered as the JSON TEXT sent, but the
 * body checks (nesting at most 64 levels, no NUL, no unpaired surrogate: json-value-check.ts)
 * run on the value JSON.parse made of it. A member name repeated inside the payload makes the
 * two differ: JSON.parse keeps the last member, the stored text keeps both. What the first one
 * holds is never checked, and reaches Postgres and every receiver as written.
 *
 * Each request must be refused with a JSON 400 that says why, storing no event and no delivery,
 * sending nothing; never a 500 and never a 201.
 */
import request from 'supertest';
import { Tenant, createTenant, messageOf } from './support/api';
import { E2eApp, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

describe('adversarial5: a repeated member name hides what the body checks should refuse', () => {
  let svc: E2eApp;
  let t: Tenant;
  let receiver: Receiver;

  beforeAll(async () => {
    svc = await startE2eApp();
    t = await createTenant(svc, 'adv5-raw-payload');
    receiver = await startReceiver();
    await request(svc.url)
      .post('/v1/endpoints')
      .set(t.auth)
      .send({ url: receiver.url })
      .expect(201);
  });

  afterAll(async () => {
    await receiver?.close();
    await svc?.close();
  });

  /** Events (and their deliveries) of type `type` stored for the tenant. */
  async function stored(type: string) {
    const [row] = await svc.dataSource.query(
      `SELECT (SELECT count(*)::int FROM events WHERE account_id = $1 AND type = $2) AS events,
              (SELECT count(*)::int FROM deliveries d JOIN events e ON e.id = d.event_id
                WHERE e.account_id = $1 AND e.type = $2) AS deliveries`,
      [t.id, type],
    );
    return row;
  }

  /** POSTs a raw JSON text to /v1/events. */
  function post(text: string) {
    return request(svc.url)
      .post('/v1/events')
      .set(t.auth)
      .set('content-type', 'application/json')
      .send(text);
  }

  const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

  it('should answer 400 (not 500) to a payload nested 100,000 levels deep under a repeated name', async () => {
    // 200 kB of brackets, under the 300 KiB body limit; JSON.parse keeps only "a":1.
    const res = await post(
      `{"type":"adv5.deep100k","payload":{"a":${nested(100_000)},"a":1}}`,
    );
    expect({ status: res.status, error: res.body.error }).toEqual({
      status: 400,
      error: 'Bad Request',
    });
    expect(messageOf(res)).toMatch(/nested deeper than 64 levels/);
    expect(await stored('adv5.deep100k')).toEqual({ events: 0, deliveries: 0 });
  });

  it('should refuse 100 levels of nesting under a repeated name as it refuses them without one', async () => {
    // Control: the same nesting without the repeated name is refused today.
    const plain = await post(
      `{"type":"adv5.deep100","payload":{"a":${nested(100)}}}`,
    );
    expect(plain.status).toBe(400);
    expect(messageOf(plain)).toMatch(/nested deeper than 64 levels/);

    const hidden = await post(
      `{"type":"adv5.deep100","payload":{"a":${nested(100)},"a":1}}`,
    );
    expect({ status: hidden.status, message: messageOf(hidden) }).toEqual({
      status: 400,
      message: expect.stringMatching(/nested deeper than 64 levels/),
    });
    expect(await stored('adv5.deep100')).toEqual({ events: 0, deliveries: 0 });
  });

  it.each([
    ['a NUL character', '\\u0000', /NUL/, 'adv5.nul'],
    ['an unpaired surrogate', '\\ud800', /surrogate/, 'adv5.surrogate'],
  ])(
    'should refuse %s under a repeated name, store nothing and send nothing',
    async (_what, escape, message, type) => {
      const sentBefore = receiver.received.length;
      const res = await post(
        `{"type":"${type}","payload":{"note":"${escape}","note":"ok"}}`,
      );
      expect({ status: res.status, message: messageOf(res) }).toEqual({
        status: 400,
        message: expect.stringMatching(message),
      });
      // NOTE: a 201 would have queued one delivery; give the worker the time it takes to send one.
      expect(await stored(type)).toEqual({ events: 0, deliveries: 0 });
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(receiver.received.slice(sentBefore).map((r) => r.body)).toEqual(
        [],
      );
    },
  );
});
