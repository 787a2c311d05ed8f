import { BadRequestException } from '@nestjs/common';
import { charsetOf } from './body-charset';
import { mediaTypeParameters } from './media-type';

describe('mediaTypeParameters', () => {
  it.each([
    ['application/json', []],
    ['application/json;', []],
    ['application/json;;charset=utf-8', [['charset', 'utf-8']]],
    ['application/json ; Charset = "UTF-16LE"', [['charset', 'UTF-16LE']]],
    [
      'application/json; profile="x;charset=utf-8 y"; charset=latin1',
      [
        ['profile', 'x;charset=utf-8 y'],
        ['charset', 'latin1'],
      ],
    ],
    [
      'application/json; a="q\\"; charset=utf-8"; charset=latin1',
      [
        ['a', 'q"; charset=utf-8'],
        ['charset', 'latin1'],
      ],
    ],
    [
      'application/json; a="\\\\"; charset=latin1',
      [
        ['a', '\\'],
        ['charset', 'latin1'],
      ],
    ],
    ['application/json; charset=', [['charset', '']]],
    ['application/json; charset=""', [['charset', '']]],
  ])('should read %j', (contentType, expected) => {
    expect(
      mediaTypeParameters(contentType).map((p) => [p.name, p.value]),
    ).toEqual(expected);
  });

  it.each([
    'application/json; charset',
    'application/json; =utf-8',
    'application/json; charset="utf-8',
    'application/json; a="x\\"; charset=utf-8',
    'application/json; charset="utf-8"x',
    'application/json; charset=utf 8',
    'application/json; charset=utf-8,latin1',
    'application/json; a="\u0001"',
    'application/json; a=b "c"',
  ])('should refuse %j with 400', (contentType) => {
    expect(() => mediaTypeParameters(contentType)).toThrow(BadRequestException);
    expect(() => mediaTypeParameters(contentType)).toThrow(/is malformed/);
  });
});

describe('charsetOf', () => {
  it('should read the charset parameter, not one inside a quoted value', () => {
    expect(
      charsetOf(
        'application/json; profile="x;charset=utf-8 y"; charset=latin1',
      ),
    ).toBe('latin1');
    expect(
      charsetOf('application/json; profile="charset=utf-16"'),
    ).toBeUndefined();
  });

  it.each([
    'application/json; charset=utf-8; charset=latin1',
    'application/json; charset=utf-8; CHARSET="utf-8"',
  ])('should refuse a charset declared twice (%j) with 400', (contentType) => {
    expect(() => charsetOf(contentType)).toThrow(BadRequestException);
    expect(() => charsetOf(contentType)).toThrow(/more than once/);
  });
});
