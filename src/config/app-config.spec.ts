import { loadConfig } from './app-config';

const KEY = 'k1:ZTJlLXRlc3Qta2V5LW5vdC1hLXNlY3JldC0zMmJ5dGU=';

describe('loadConfig', () => {
  it('should refuse to start without SECRETS_ENCRYPTION_KEYS, saying how to make one', () => {
    expect(() => loadConfig({})).toThrow(
      /SECRETS_ENCRYPTION_KEYS is required.*openssl rand -base64 32/,
    );
    expect(() => loadConfig({ SECRETS_ENCRYPTION_KEYS: ' , ' })).toThrow(
      /SECRETS_ENCRYPTION_KEYS is required/,
    );
  });

  it('should read the defaults', () => {
    const config = loadConfig({ SECRETS_ENCRYPTION_KEYS: KEY });
    expect(config).toMatchObject({
      role: 'all',
      bullPrefix: 'bull',
      preparedStatements: true,
      encryptionKeys: [{ id: 'k1' }],
    });
  });

  it.each([
    ['BULL_PREFIX', 'has spaces'],
    ['BULL_PREFIX', 'x'.repeat(65)],
    ['SECRETS_ENCRYPTION_KEYS', 'k1:short'],
    ['DATABASE_PREPARED_STATEMENTS', 'no'],
  ])('should refuse %s=%s', (name, value) => {
    expect(() =>
      loadConfig({ SECRETS_ENCRYPTION_KEYS: KEY, [name]: value }),
    ).toThrow(name);
  });

  it('should turn prepared statements off with DATABASE_PREPARED_STATEMENTS=off', () => {
    expect(
      loadConfig({
        SECRETS_ENCRYPTION_KEYS: KEY,
        DATABASE_PREPARED_STATEMENTS: 'off',
      }).preparedStatements,
    ).toBe(false);
  });
});
