import { MAX_JSON_DEPTH, jsonBodyProblem } from './json-value-check';

describe('jsonBodyProblem', () => {
  it('should accept ordinary bodies, nested keys named like Object methods included', () => {
    expect(
      jsonBodyProblem(
        JSON.parse(
          '{"a": [1, "x", {"__proto__": {"constructor": 1}}], "b": null}',
        ),
      ),
    ).toBeUndefined();
  });

  it('should name the path of a bad string, key or nesting', () => {
    expect(jsonBodyProblem({ a: [0, { s: 'x\u0000' }] })).toBe(
      'body.a.1.s contains a NUL character (\\u0000)',
    );
    expect(jsonBodyProblem({ a: { ['k\u0000']: 1 } })).toBe(
      'a key in body.a contains a NUL character (\\u0000)',
    );
    expect(jsonBodyProblem({ a: ['\ud800'] })).toBe(
      'body.a.0 contains an unpaired UTF-16 surrogate',
    );
    expect(jsonBodyProblem({ ok: '\ud834\udd1e' })).toBeUndefined();
  });

  it.each([
    '__proto__',
    'constructor',
    'prototype',
    'toString',
    'hasOwnProperty',
  ])('should refuse a top-level %s key', (key) => {
    expect(jsonBodyProblem(JSON.parse(`{"${key}": 1, "a": 2}`))).toBe(
      `property ${key} should not exist`,
    );
  });

  it('should allow MAX_JSON_DEPTH levels of nesting below the body, iteratively', () => {
    const nested = (depth: number) =>
      JSON.parse(`${'['.repeat(depth)}${']'.repeat(depth)}`);
    expect(jsonBodyProblem({ a: nested(MAX_JSON_DEPTH) })).toBeUndefined();
    expect(jsonBodyProblem({ a: nested(MAX_JSON_DEPTH + 1) })).toMatch(
      /is nested deeper than 64 levels$/,
    );
    expect(jsonBodyProblem({ a: nested(100_000) })).toMatch(/nested deeper/);
  });
});
