import { storableOrNull, storableText } from './storable-text';

describe('storableText', () => {
  it('should replace NUL characters and unpaired surrogates, and nothing else', () => {
    expect(storableText('a\u0000b\u0000')).toBe('a\uFFFDb\uFFFD');
    expect(storableText('x\uD800y\uDC00z')).toBe('x\uFFFDy\uFFFDz');
    expect(storableText('é ☃ \uD834\uDD1E \uFFFD')).toBe(
      'é ☃ \uD834\uDD1E \uFFFD',
    );
    expect(storableOrNull(null)).toBeNull();
    expect(storableOrNull(undefined)).toBeNull();
  });
});
