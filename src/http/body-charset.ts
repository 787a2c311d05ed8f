import { BadRequestException, HttpException, HttpStatus } from '@nestjs/common';
import { mediaTypeParameters } from './media-type';

/** Raised for a body in a charset the service does not read (415). */
export class UnsupportedCharsetException extends HttpException {
  constructor(charset: string) {
    super(
      {
        statusCode: HttpStatus.UNSUPPORTED_MEDIA_TYPE,
        error: 'Unsupported Media Type',
        message:
          `Unsupported charset "${charset.slice(0, 40)}": send UTF-8 JSON ` +
          '(UTF-16LE/BE, declared or with a byte order mark, is read too)',
      },
      HttpStatus.UNSUPPORTED_MEDIA_TYPE,
    );
  }
}

type Encoding = 'utf-8' | 'utf-16le' | 'utf-16be';

/**
 * The `charset` parameter of a Content-Type, lower-cased, if any (parameters read per RFC
 * 9110, quoted strings included: see `mediaTypeParameters`). A charset declared twice is a
 * 400: which one the body is in cannot be told.
 */
export function charsetOf(contentType: string | undefined): string | undefined {
  if (!contentType) return undefined;
  const charsets = mediaTypeParameters(contentType).filter(
    (p) => p.name === 'charset',
  );
  if (charsets.length > 1) {
    throw new BadRequestException(
      'Content-Type declares the charset parameter more than once; declare it once',
    );
  }
  return charsets[0]?.value.toLowerCase();
}

function bomOf(bytes: Buffer): Encoding | undefined {
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    return 'utf-8';
  }
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return 'utf-16le';
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return 'utf-16be';
  return undefined;
}

const BOM_LENGTH: Record<Encoding, number> = {
  'utf-8': 3,
  'utf-16le': 2,
  'utf-16be': 2,
};

/** Which encoding the bytes are in: the declared charset, else the byte order mark, else UTF-8. */
function encodingOf(bytes: Buffer, charset: string | undefined): Encoding {
  const bom = bomOf(bytes);
  switch (charset) {
    case undefined:
      return bom ?? 'utf-8';
    case 'utf-8':
    case 'utf8':
      return 'utf-8';
    case 'utf-16le':
    case 'utf-16be':
      return charset;
    case 'utf-16':
      // RFC 2781: without a byte order mark, UTF-16 is big-endian.
      return bom === 'utf-16le' ? 'utf-16le' : 'utf-16be';
    default:
      throw new UnsupportedCharsetException(charset);
  }
}

/** Refuses (415) a declared charset the service does not read, before the body is read. */
export function assertSupportedCharset(contentType?: string): void {
  encodingOf(Buffer.alloc(0), charsetOf(contentType));
}

/**
 * Decodes a request body per its declared charset (UTF-8 or UTF-16LE/BE, with or without a
 * byte order mark; a BOM alone also tells UTF-16 apart). Bytes that are not valid in that
 * encoding are refused (400) rather than silently replaced.
 */
export function decodeBody(bytes: Buffer, contentType?: string): string {
  const encoding = encodingOf(bytes, charsetOf(contentType));
  const skip = bomOf(bytes) === encoding ? BOM_LENGTH[encoding] : 0;
  try {
    return new TextDecoder(encoding, { fatal: true, ignoreBOM: true }).decode(
      bytes.subarray(skip),
    );
  } catch {
    throw new BadRequestException(
      `Request body is not valid ${encoding.toUpperCase()}` +
        (charsetOf(contentType) ? '' : ' (no charset was declared)'),
    );
  }
}
