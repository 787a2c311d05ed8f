/** Where one top-level member's value sits in a JSON text: `text.slice(start, end)`. */
export interface MemberSpan {
  start: number;
  end: number;
}

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);

function skipWs(text: string, i: number): number {
  while (i < text.length && WS.has(text.charCodeAt(i))) i++;
  return i;
}

/** The index just past the string literal that starts at `i` (at its opening quote). */
function skipString(text: string, i: number): number {
  for (i++; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5c) i++;
    else if (c === 0x22) return i + 1;
  }
  throw new SyntaxError('unterminated string');
}

/** The index just past the JSON value that starts at `i`. */
function skipValue(text: string, i: number): number {
  const first = text.charCodeAt(i);
  if (first === 0x22) return skipString(text, i);
  if (first !== 0x7b && first !== 0x5b) {
    // A number or a literal: it ends at the next structural character or whitespace.
    while (i < text.length && !/[\s,}\]]/.test(text[i])) i++;
    return i;
  }
  let depth = 0;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) i = skipString(text, i) - 1;
    else if (c === 0x7b || c === 0x5b) depth++;
    else if ((c === 0x7d || c === 0x5d) && --depth === 0) return i + 1;
  }
  throw new SyntaxError('unterminated value');
}

/**
 * The source spans of the members of a JSON object text, by key, so that a member's value
 * can be kept exactly as it was written (key order, whitespace, number spelling). Keys are
 * decoded as `JSON.parse` decodes them, and a repeated key maps to its last occurrence, as
 * in `JSON.parse`. The text must already be known to be valid JSON (it is only scanned).
 */
export function topLevelMembers(text: string): Map<string, MemberSpan> {
  const members = new Map<string, MemberSpan>();
  let i = skipWs(text, 0);
  if (text[i] !== '{') throw new SyntaxError('not a JSON object');
  i = skipWs(text, i + 1);
  while (text[i] === '"') {
    const keyEnd = skipString(text, i);
    const key = JSON.parse(text.slice(i, keyEnd)) as string;
    i = skipWs(text, keyEnd);
    if (text[i] !== ':') throw new SyntaxError('expected ":"');
    const start = skipWs(text, i + 1);
    const end = skipValue(text, start);
    members.set(key, { start, end });
    i = skipWs(text, end);
    if (text[i] === ',') i = skipWs(text, i + 1);
  }
  return members;
}
