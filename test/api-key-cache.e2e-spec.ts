import request from 'supertest';
import { hashApiKey } from '../src/auth/api-key';
import { ACCOUNT_CACHE_TTL_MS } from '../src/auth/api-key.guard';
import { E2eApp, startE2eApp } from './support/harness';

/**
 * The API key guard keeps the account of a valid key for ACCOUNT_CACHE_TTL_MS: a request
 * costs no lookup while it is cached, and an account removed by hand stops authenticating once
 * the entry is that old. Unknown keys are looked up every time.
 */
describe('when an API key was used a moment ago', () => {
  let svc: E2eApp;

  beforeAll(async () => {
    svc = await startE2eApp({ role: 'api' });
  });

  afterEach(() => jest.restoreAllMocks());

  afterAll(async () => {
    await svc?.close();
  });

  const list = (key: string) =>
    request(svc.url).get('/v1/endpoints').set('authorization', `Bearer ${key}`);

  it('should serve the cached account until the entry expires, then refuse a removed one', async () => {
    const key = await svc.createAccount('cached');
    await list(key).expect(200);
    await svc.dataSource.query('DELETE FROM accounts WHERE api_key_hash = $1', [
      hashApiKey(key),
    ]);
    // Still cached: no lookup, the account is served as it was read.
    await list(key).expect(200);
    const now = Date.now();
    jest.spyOn(Date, 'now').mockReturnValue(now + ACCOUNT_CACHE_TTL_MS + 1);
    const res = await list(key).expect(401);
    expect(res.body.message).toBe('Invalid API key');
  });

  it('should look an unknown key up every time: one that becomes valid is accepted at once', async () => {
    const key = `whk_test_${Date.now()}_not_issued_yet`;
    await list(key).expect(401);
    await svc.dataSource.query(
      `INSERT INTO accounts (name, api_key_hash, api_key_prefix) VALUES ('late', $1, 'whk_test')`,
      [hashApiKey(key)],
    );
    await list(key).expect(200);
  });
});
