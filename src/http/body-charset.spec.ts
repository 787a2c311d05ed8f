import { BadRequestException } from '@nestjs/common';
import {
  UnsupportedCharsetException,
  assertSupportedCharset,
  charsetOf,
  decodeBody,
} from './body-charset';

const text = '{"a":"é☃𝄞"}';
const be = (s: string) => Buffer.from(s, 'utf16le').swap16();

describe('decodeBody', () => {
  it.each([
    ['UTF-8', Buffer.from(text), undefined],
    ['UTF-8 with a BOM', Buffer.from(`\uFEFF${text}`), undefined],
    ['UTF-8 declared, with a BOM', Buffer.from(`\uFEFF${text}`), 'utf-8'],
    ['utf8 declared', Buffer.from(text), 'utf8'],
    ['UTF-16LE declared', Buffer.from(text, 'utf16le'), 'utf-16le'],
    ['UTF-16LE with a BOM', Buffer.from(`\uFEFF${text}`, 'utf16le'), undefined],
    ['UTF-16BE declared', be(text), 'utf-16be'],
    ['UTF-16BE with a BOM', be(`\uFEFF${text}`), undefined],
    ['UTF-16 declared, big-endian without a BOM', be(text), 'utf-16'],
    [
      'UTF-16 declared, little-endian BOM',
      Buffer.from(`\uFEFF${text}`, 'utf16le'),
      'UTF-16',
    ],
  ])('should decode %s', (_what, bytes, charset) => {
    const type = charset
      ? `application/json; charset=${charset}`
      : 'application/json';
    expect(decodeBody(bytes, type)).toBe(text);
  });

  it('should keep a second BOM (it is content, not a mark)', () => {
    expect(decodeBody(Buffer.from('\uFEFF\uFEFF{}'))).toBe('\uFEFF{}');
  });

  it.each([
    ['invalid UTF-8', Buffer.from([0x7b, 0xff, 0x7d]), undefined],
    ['an odd UTF-16 length', Buffer.from([0x7b, 0x00, 0x7d]), 'utf-16le'],
    ['a lone surrogate in UTF-16LE', Buffer.from([0x00, 0xd8]), 'utf-16le'],
  ])('should refuse %s with 400', (_what, bytes, charset) => {
    const type = charset
      ? `application/json; charset=${charset}`
      : 'application/json';
    expect(() => decodeBody(bytes, type)).toThrow(BadRequestException);
  });

  it.each(['latin1', 'iso-8859-1', 'utf-32', 'utf-7', 'x'])(
    'should refuse charset=%s with 415 before reading',
    (charset) => {
      expect(() =>
        assertSupportedCharset(`application/json; charset=${charset}`),
      ).toThrow(UnsupportedCharsetException);
    },
  );

  it('should read quoted and spaced charset parameters', () => {
    expect(charsetOf('application/json ; Charset = "UTF-16LE"')).toBe(
      'utf-16le',
    );
    expect(charsetOf('application/json')).toBeUndefined();
  });
});
