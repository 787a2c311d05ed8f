import { randomUUID } from 'crypto';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { Webhook } from 'standardwebhooks';
import type { DataSource } from 'typeorm';
import { generateSecret } from '../src/webhooks-http/standard-webhooks-signer';
import { deliveryApi } from './support/delivery-api';
import {
  ADMIN_TOKEN,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

/** Every way a secret could be written down: as issued, its base64 part, its key bytes. */
function forms(secret: string): string[] {
  const encoded = secret.replace(/^(whsec_|whk_)/, '');
  const bytes = Buffer.from(
    encoded,
    secret.startsWith('whk_') ? 'base64url' : 'base64',
  );
  return [
    secret,
    encoded,
    bytes.toString('base64'),
    bytes.toString('base64url'),
    bytes.toString('hex'),
  ];
}

/** Every row of every table of the database, as text. */
async function dumpDatabase(dataSource: DataSource): Promise<string> {
  const tables: { name: string }[] = await dataSource.query(
    `SELECT format('%I.%I', table_schema, table_name) AS name FROM information_schema.tables
      WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')`,
  );
  const parts: string[] = [];
  for (const { name } of tables) {
    const rows: { row: string }[] = await dataSource.query(
      `SELECT t::text AS row FROM ${name} t`,
    );
    parts.push(...rows.map((r) => `${name} ${r.row}`));
  }
  return parts.join('\n');
}

/** Every key of the Redis database and its value, whatever its type. */
async function dumpRedis(redis: Redis): Promise<string> {
  const parts: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) {
      const type = await redis.type(key);
      const value =
        type === 'string'
          ? await redis.getBuffer(key).then((b) => b?.toString('latin1'))
          : type === 'hash'
            ? await redis.hgetall(key)
            : type === 'list'
              ? await redis.lrange(key, 0, -1)
              : type === 'set'
                ? await redis.smembers(key)
                : type === 'zset'
                  ? await redis.zrange(key, 0, -1, 'WITHSCORES')
                  : type === 'stream'
                    ? await redis.xrange(key, '-', '+')
                    : type;
      parts.push(`${key} ${JSON.stringify(value)}`);
    }
  } while (cursor !== '0');
  return parts.join('\n');
}

describe('when secrets have been issued, used and replayed', () => {
  let svc: E2eApp;
  let receiver: Receiver;
  const secrets: string[] = [];

  beforeAll(async () => {
    svc = await startE2eApp();
    receiver = await startReceiver();
  });

  afterAll(async () => {
    await receiver?.close();
    await svc?.close();
  });

  const api = () => request(svc.url);

  /** The forms of the known secrets found in any table or Redis key. */
  async function leaks(): Promise<string[]> {
    const [database, redis] = await Promise.all([
      dumpDatabase(svc.dataSource),
      dumpRedis(svc.queue.client),
    ]);
    expect(database.length).toBeGreaterThan(0);
    return secrets
      .flatMap(forms)
      .filter((form) => database.includes(form) || redis.includes(form));
  }

  it('should replay responses with the secrets they issued and store none in clear', async () => {
    const accountKey = `acct-${randomUUID()}`;
    const created = await api()
      .post('/v1/accounts')
      .set('authorization', `Bearer ${ADMIN_TOKEN}`)
      .set('idempotency-key', accountKey)
      .send({ name: 'secretive' })
      .expect(201);
    const replayed = await api()
      .post('/v1/accounts')
      .set('authorization', `Bearer ${ADMIN_TOKEN}`)
      .set('idempotency-key', accountKey)
      .send({ name: 'secretive' })
      .expect(201);
    expect(replayed.headers['idempotent-replayed']).toBe('true');
    expect(replayed.body).toEqual(created.body);
    const apiKey: string = created.body.apiKey;
    secrets.push(apiKey);
    const client = deliveryApi(svc, apiKey);

    const endpointKey = `ep-${randomUUID()}`;
    const endpoint = await client
      .api()
      .post('/v1/endpoints')
      .set(client.auth)
      .set('idempotency-key', endpointKey)
      .send({ url: receiver.url })
      .expect(201);
    const endpointAgain = await client
      .api()
      .post('/v1/endpoints')
      .set(client.auth)
      .set('idempotency-key', endpointKey)
      .send({ url: receiver.url })
      .expect(201);
    expect(endpointAgain.body).toEqual(endpoint.body);
    secrets.push(endpoint.body.secret);

    const rotateKey = `rot-${randomUUID()}`;
    const rotate = () =>
      client
        .api()
        .post(`/v1/endpoints/${endpoint.body.id}/rotate-secret`)
        .set(client.auth)
        .set('idempotency-key', rotateKey)
        .expect(201);
    const rotated = await rotate();
    expect((await rotate()).body).toEqual(rotated.body);
    secrets.push(rotated.body.secret);

    const plain = await client.createEndpoint(receiver.url);
    secrets.push(plain.secret);
    const current = await client
      .api()
      .get(`/v1/endpoints/${plain.id}/secret`)
      .set(client.auth)
      .expect(200);
    expect(current.body).toEqual({ secret: plain.secret });

    const event = await client.publish('trip.delayed', { n: 1 });
    const got = await eventually(
      () =>
        receiver.received.filter((r) => r.headers['webhook-id'] === event.id)
          .length === 2 &&
        receiver.received.filter((r) => r.headers['webhook-id'] === event.id),
      'both webhooks',
    );
    const verifies = (secret: string) =>
      got.some((r) => {
        try {
          new Webhook(secret).verify(r.body, r.headers as any);
          return true;
        } catch {
          return false;
        }
      });
    expect(
      [endpoint.body.secret, rotated.body.secret, plain.secret].map(verifies),
    ).toEqual([true, true, true]);
    // Everything above is at rest now: no table row and no Redis key holds a secret.
    expect(await leaks()).toEqual([]);
  });

  it('should seal secrets stored in clear by an older version at start-up', async () => {
    const apiKey = await svc.createAccount('legacy');
    secrets.push(apiKey);
    const client = deliveryApi(svc, apiKey);
    const endpoint = await client.createEndpoint(receiver.url);
    secrets.push(endpoint.secret);
    const legacy = generateSecret();
    secrets.push(legacy);
    const now = new Date().toISOString();
    await svc.dataSource.query(
      'UPDATE endpoints SET secrets = $2 WHERE id = $1',
      [
        endpoint.id,
        JSON.stringify([{ secret: legacy, createdAt: now, expiresAt: null }]),
      ],
    );
    const [{ id: accountId }] = await svc.dataSource.query(
      'SELECT id FROM accounts WHERE api_key_prefix = $1 ORDER BY created_at DESC LIMIT 1',
      [apiKey.slice(0, 8)],
    );
    const legacyKey = `legacy-${randomUUID()}`;
    await svc.dataSource.query(
      `INSERT INTO idempotency_keys (account_id, key, request_hash, response_status, response_body)
       VALUES ($1, $2, 'x', 201, $3)`,
      [accountId, legacyKey, JSON.stringify({ secret: legacy })],
    );

    await svc.close();
    svc = await startE2eApp();

    const [row] = await svc.dataSource.query(
      'SELECT secrets::text AS secrets FROM endpoints WHERE id = $1',
      [endpoint.id],
    );
    expect(row.secrets).not.toContain(legacy);
    expect(row.secrets).toMatch(/"sealed": "v1\.e2e\./);
    const [idem] = await svc.dataSource.query(
      'SELECT response_body FROM idempotency_keys WHERE key = $1',
      [legacyKey],
    );
    expect(idem.response_body).toMatch(/^v1\.e2e\./);
    const restarted = deliveryApi(svc, apiKey);
    const res = await restarted
      .api()
      .get(`/v1/endpoints/${endpoint.id}/secret`)
      .set(restarted.auth)
      .expect(200);
    expect(res.body).toEqual({ secret: legacy });
  });

  it('should leave no secret in clear in any table or Redis key after a restart', async () => {
    expect(secrets.length).toBeGreaterThanOrEqual(7);
    expect(await leaks()).toEqual([]);
  });
});
