import { topLevelMembers } from './json-members';

const valueOf = (text: string, key: string) => {
  const span = topLevelMembers(text).get(key);
  return span && text.slice(span.start, span.end);
};

describe('topLevelMembers', () => {
  it('should give each value exactly as written', () => {
    const text =
      ' {"type" : "a.b" ,\n "payload":{ "z": 1, "a" : [1.50, 1e400, 12345678901234567890],' +
      ' "s": "}]\\"{[", "__proto__": {"x": null} } , "n": -0.0e+1, "t":true}  ';
    expect(valueOf(text, 'type')).toBe('"a.b"');
    expect(valueOf(text, 'payload')).toBe(
      '{ "z": 1, "a" : [1.50, 1e400, 12345678901234567890], "s": "}]\\"{[", "__proto__": {"x": null} }',
    );
    expect(valueOf(text, 'n')).toBe('-0.0e+1');
    expect(valueOf(text, 't')).toBe('true');
    expect([...topLevelMembers(text).keys()]).toEqual([
      'type',
      'payload',
      'n',
      't',
    ]);
  });

  it('should decode keys like JSON.parse and keep the last of repeated keys', () => {
    const text = '{"pay\\u006coad": [1], "payload": {"b": 2}}';
    expect(valueOf(text, 'payload')).toBe('{"b": 2}');
    expect(JSON.parse(text).payload).toEqual({ b: 2 });
  });

  it('should handle escaped backslashes before a closing quote', () => {
    const text = '{"a": "x\\\\", "b": {"c": "\\\\\\""}}';
    expect(valueOf(text, 'a')).toBe('"x\\\\"');
    expect(valueOf(text, 'b')).toBe('{"c": "\\\\\\""}');
  });

  it('should refuse what is not an object', () => {
    expect(() => topLevelMembers('[1]')).toThrow(SyntaxError);
    expect(topLevelMembers('{}').size).toBe(0);
  });
});
