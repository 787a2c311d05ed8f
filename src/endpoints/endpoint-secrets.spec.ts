import {
  MAX_OLD_SECRETS,
  ROTATED_SECRET_TTL_MS,
  RotationLimitError,
  activeSecrets,
  initialSecrets,
  rotateSecrets,
} from './endpoint-secrets';

describe('rotateSecrets', () => {
  it('keeps every rotated-out secret of the window signing, then refuses with when', () => {
    const start = new Date('2026-01-01T00:00:00Z');
    let secrets = initialSecrets(start);
    const first = secrets[0].secret;
    for (let i = 1; i <= MAX_OLD_SECRETS; i++) {
      secrets = rotateSecrets(secrets, new Date(start.getTime() + i * 1000));
    }
    const now = new Date(start.getTime() + (MAX_OLD_SECRETS + 1) * 1000);
    expect(activeSecrets(secrets, now).map((s) => s.secret)).toContain(first);
    expect(activeSecrets(secrets, now)).toHaveLength(MAX_OLD_SECRETS + 1);
    let refused: unknown;
    try {
      rotateSecrets(secrets, now);
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(RotationLimitError);
    // Possible again once the first rotated-out secret expires.
    const retryAt = new Date(start.getTime() + 1000 + ROTATED_SECRET_TTL_MS);
    expect((refused as RotationLimitError).retryAt).toEqual(retryAt);
    expect(() =>
      rotateSecrets(secrets, new Date(retryAt.getTime() + 1)),
    ).not.toThrow();
  });
});
