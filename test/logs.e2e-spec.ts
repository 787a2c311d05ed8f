import { Writable } from 'stream';
import request from 'supertest';
import { ObservabilityConfig } from '../src/observability/observability-config';
import { createTenant } from './support/api';
import { DelayFlow, runDelayFlow } from './support/delay-flow';
import {
  ADMIN_TOKEN,
  E2E_ENCRYPTION_KEYS,
  E2eApp,
  SILENT,
  eventually,
  startE2eApp,
} from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('when the service logs a full run (JSON lines captured)', () => {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const observability: ObservabilityConfig = {
    ...SILENT,
    logLevel: 'debug',
    logDestination: destination,
  };
  let svc: E2eApp;
  let receiver: Receiver;
  let flow: DelayFlow;
  const secrets: Record<string, string> = {};

  beforeAll(async () => {
    svc = await startE2eApp({}, observability);
    // The first attempt fails (500, a retry is logged), the second succeeds.
    receiver = await startReceiver((n, _r, res) => {
      res.statusCode = n === 0 ? 500 : 200;
      res.end(n === 0 ? 'try again' : 'ok');
    });
    flow = await runDelayFlow(svc, receiver, 'logs-flow-1');
    const api = () => request(svc.url);
    // More of what an operator and a customer do: rotate the secret, list, a wrong key.
    const rotated = await api()
      .post(`/v1/endpoints/${flow.endpointId}/rotate-secret`)
      .set(flow.tenant.auth)
      .expect(201);
    await api().get('/metrics').set('authorization', `Bearer ${ADMIN_TOKEN}`);
    await api().get('/v1/endpoints').set(flow.tenant.auth).expect(200);
    await api()
      .get('/v1/endpoints')
      .set('authorization', `Bearer ${flow.tenant.apiKey}x`)
      .expect(401);
    const other = await createTenant(svc, 'logs-other');
    Object.assign(secrets, {
      apiKey: flow.tenant.apiKey,
      otherApiKey: other.apiKey,
      adminToken: ADMIN_TOKEN,
      whsec: flow.secret,
      whsecKey: flow.secret.slice('whsec_'.length),
      encryptionKey: E2E_ENCRYPTION_KEYS.split(':')[1],
      rotatedWhsec: rotated.body.secret,
    });
    for (const [i, received] of receiver.received.entries()) {
      const header = String(received.headers['webhook-signature']);
      for (const [j, signature] of header.split(' ').entries()) {
        secrets[`signature${i}.${j}`] = signature.split(',')[1];
      }
    }
    await eventually(
      () => lines.some((l) => l.includes('"outcome":"succeeded"')),
      'the last job to be logged',
    );
  });

  afterAll(async () => {
    await svc?.close();
    await receiver?.close();
  });

  const records = () => lines.map((line) => JSON.parse(line));

  it('should write JSON lines only', () => {
    expect(lines.length).toBeGreaterThan(20);
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
  });

  it('should contain no secret, API key, signature or Authorization value', () => {
    expect(Object.keys(secrets).length).toBeGreaterThanOrEqual(8);
    const text = lines.join('\n');
    for (const [name, secret] of Object.entries(secrets)) {
      expect({ name, found: text.includes(secret) }).toEqual({
        name,
        found: false,
      });
    }
    expect(text.toLowerCase()).not.toContain('bearer ');
  });

  it("should carry the request id into the job's and the delivery's lines", () => {
    const ofRequest = records().filter((r) => r.reqId === flow.requestId);
    const messages = ofRequest.map((r) => r.msg);
    expect(messages).toContain('request completed');
    expect(messages).toContain('delivery job done');
    const outcomes = ofRequest.filter((r) => r.outcome).map((r) => r.outcome);
    expect(outcomes).toContain('retry_scheduled');
    expect(outcomes).toContain('succeeded');
    const attempts = ofRequest.filter((r) => r.msg === 'webhook attempt sent');
    expect(attempts.map((r) => [r.attempt, r.result, r.status])).toEqual([
      [1, '5xx', 500],
      [2, '2xx', 200],
    ]);
    const completed = ofRequest.find((r) => r.msg === 'request completed');
    expect(completed.req).toEqual({
      id: flow.requestId,
      method: 'POST',
      url: `/v1/trips/${flow.tripId}/delays`,
    });
    expect(completed.res).toEqual({ statusCode: 201 });
  });

  it('should echo X-Request-Id, or generate one when it is missing or malformed', async () => {
    const api = () =>
      request(svc.url).get('/v1/endpoints').set(flow.tenant.auth);
    expect(
      (await api().set('x-request-id', 'abc-123')).headers['x-request-id'],
    ).toBe('abc-123');
    expect((await api()).headers['x-request-id']).toMatch(UUID);
    const forged = await api().set('x-request-id', 'a"} {"level":60');
    expect(forged.headers['x-request-id']).toMatch(UUID);
  });
});
