/** Unpaired UTF-16 surrogates: not encodable as UTF-8. */
const LONE_SURROGATE =
  /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Text that came from outside (a receiver's body, an error message) made safe for a Postgres
 * `text` column: NUL characters (which Postgres refuses) and unpaired surrogates become U+FFFD,
 * nothing else changes.
 */
export function storableText(text: string): string {
  return text.replaceAll('\u0000', '\uFFFD').replace(LONE_SURROGATE, '\uFFFD');
}

/** {@link storableText} for nullable values. */
export function storableOrNull(text: string | null | undefined): string | null {
  return text === null || text === undefined ? null : storableText(text);
}
