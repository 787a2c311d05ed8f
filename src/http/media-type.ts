import { BadRequestException } from '@nestjs/common';

/** A media type parameter, its name lower-cased, its value unquoted (case kept). */
export interface MediaTypeParameter {
  name: string;
  value: string;
}

const TCHAR = /[!#$%&'*+.^_`|~0-9A-Za-z-]/;
const OWS = /[ \t]/;

/** `qdtext` of RFC 9110: HTAB, SP, VCHAR but `"` and `\`, and obs-text. */
const isQdtext = (code: number) =>
  code === 0x09 ||
  code === 0x20 ||
  code === 0x21 ||
  (code >= 0x23 && code <= 0x5b) ||
  (code >= 0x5d && code <= 0x7e) ||
  (code >= 0x80 && code <= 0xff);

/** What a backslash may escape in a quoted string (RFC 9110 `quoted-pair`). */
const isQuotable = (code: number) =>
  code === 0x09 ||
  (code >= 0x20 && code <= 0x7e) ||
  (code >= 0x80 && code <= 0xff);

function malformed(contentType: string, why: string) {
  return new BadRequestException(
    `Content-Type "${contentType.slice(0, 100)}" is malformed: ${why}`,
  );
}

/**
 * The parameters of a Content-Type value, read per RFC 9110 (section 5.6.6 and 8.3.1):
 * `type/subtype *( OWS ";" OWS [ name "=" ( token / quoted-string ) ] )`. A quoted string
 * may hold `;`, `=` and escaped quotes (`\"`), so a `;charset=` inside one is part of that
 * value, not a parameter. Spaces around `=` and an empty value are tolerated (as
 * before); anything else that does not follow the grammar (a name without `=`, an
 * unterminated quote, text after a value) is a 400, never guessed at.
 */
export function mediaTypeParameters(contentType: string): MediaTypeParameter[] {
  const parameters: MediaTypeParameter[] = [];
  const end = contentType.length;
  let i = contentType.indexOf(';');
  if (i < 0) return parameters;
  const skipOws = () => {
    while (i < end && OWS.test(contentType[i])) i++;
  };
  while (i < end) {
    // contentType[i] is ';'
    i++;
    skipOws();
    if (i === end || contentType[i] === ';') continue;
    const nameStart = i;
    while (i < end && TCHAR.test(contentType[i])) i++;
    const name = contentType.slice(nameStart, i).toLowerCase();
    if (!name) throw malformed(contentType, `unexpected "${contentType[i]}"`);
    skipOws();
    if (contentType[i] !== '=') {
      throw malformed(contentType, `parameter "${name}" has no value`);
    }
    i++;
    skipOws();
    let value = '';
    if (contentType[i] === '"') {
      i++;
      for (;;) {
        if (i === end) {
          throw malformed(
            contentType,
            `the quoted value of "${name}" is not closed`,
          );
        }
        const code = contentType.charCodeAt(i);
        if (code === 0x22) {
          i++;
          break;
        }
        if (
          code === 0x5c &&
          i + 1 < end &&
          isQuotable(contentType.charCodeAt(i + 1))
        ) {
          value += contentType[i + 1];
          i += 2;
        } else if (isQdtext(code)) {
          value += contentType[i];
          i++;
        } else {
          throw malformed(
            contentType,
            `the quoted value of "${name}" holds an invalid character`,
          );
        }
      }
    } else {
      const valueStart = i;
      while (i < end && TCHAR.test(contentType[i])) i++;
      value = contentType.slice(valueStart, i);
    }
    skipOws();
    if (i < end && contentType[i] !== ';') {
      throw malformed(
        contentType,
        `unexpected text after the value of "${name}"`,
      );
    }
    parameters.push({ name, value });
  }
  return parameters;
}
