/** Deepest nesting of objects and arrays accepted in a body. */
export const MAX_JSON_DEPTH = 64;

const LONE_SURROGATE =
  /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** What is wrong with a string Postgres cannot store (NUL, broken UTF-16), if anything. */
function badString(value: string): string | undefined {
  if (value.includes('\u0000')) return 'contains a NUL character (\\u0000)';
  if (LONE_SURROGATE.test(value)) {
    return 'contains an unpaired UTF-16 surrogate';
  }
  return undefined;
}

/**
 * Top-level keys no request body may have: every field name of `Object.prototype`
 * (`__proto__`, `constructor`, `toString`, ...) and `prototype`. class-transformer and
 * object spreads drop or misread them, so they would vanish instead of being refused.
 */
function isReservedKey(key: string): boolean {
  return key === 'prototype' || key in Object.prototype;
}

interface Frame {
  container: object;
  /** Own keys of an object; null for an array. */
  keys: string[] | null;
  /** Index of the next child to visit. */
  index: number;
}

/** The path of the child last visited in the top frame, e.g. `body.payload.items.0`. */
function pathOf(stack: Frame[], depth = stack.length): string {
  let path = 'body';
  for (let i = 0; i < depth; i++) {
    const { keys, index } = stack[i];
    path += `.${keys ? keys[index - 1] : index - 1}`;
    if (path.length > 200) return `${path.slice(0, 200)}…`;
  }
  return path;
}

/**
 * What is wrong with a parsed JSON body, as a sentence naming where, or undefined: a reserved
 * top-level key, nesting deeper than `MAX_JSON_DEPTH`, strings or keys Postgres refuses.
 * One iterative pass (a deeply nested body cannot overflow the stack), no allocation per
 * value: the path is only built for the message.
 */
export function jsonBodyProblem(body: unknown): string | undefined {
  if (typeof body === 'string') {
    const problem = badString(body);
    return problem && `body ${problem}`;
  }
  if (body === null || typeof body !== 'object') return undefined;
  const stack: Frame[] = [
    {
      container: body,
      keys: Array.isArray(body) ? null : Object.keys(body),
      index: 0,
    },
  ];
  while (stack.length > 0) {
    const frame = stack[stack.length - 1];
    let child: unknown;
    if (frame.keys === null) {
      const array = frame.container as unknown[];
      if (frame.index >= array.length) {
        stack.pop();
        continue;
      }
      child = array[frame.index++];
    } else {
      if (frame.index >= frame.keys.length) {
        stack.pop();
        continue;
      }
      const key = frame.keys[frame.index++];
      const problem = badString(key);
      if (problem) {
        return `a key in ${pathOf(stack, stack.length - 1)} ${problem}`;
      }
      if (stack.length === 1 && isReservedKey(key)) {
        return `property ${key} should not exist`;
      }
      child = (frame.container as Record<string, unknown>)[key];
    }
    if (typeof child === 'string') {
      const problem = badString(child);
      if (problem) return `${pathOf(stack)} ${problem}`;
    } else if (child !== null && typeof child === 'object') {
      if (stack.length > MAX_JSON_DEPTH) {
        return `${pathOf(stack)} is nested deeper than ${MAX_JSON_DEPTH} levels`;
      }
      stack.push({
        container: child,
        keys: Array.isArray(child) ? null : Object.keys(child),
        index: 0,
      });
    }
  }
  return undefined;
}

/**
 * What is wrong with the JSON text itself that the parsed value does not show: a member that
 * `JSON.parse` dropped for a later one with the same name is still in the text, and handlers
 * that keep the text as sent (event payloads: stored, returned and delivered byte for byte)
 * keep it. So the nesting limit and the string checks of {@link jsonBodyProblem} are applied to
 * every value written in the text. One linear pass; only strings with an escape are decoded (a
 * raw NUL or unpaired surrogate cannot be in valid JSON text that decoded without error).
 * The text must already be known to be valid JSON.
 */
export function rawJsonProblem(text: string): string | undefined {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const start = i;
      let escaped = false;
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) {
          escaped = true;
          i++;
        } else if (d === 0x22) break;
      }
      if (escaped) {
        const problem = badString(
          JSON.parse(text.slice(start, i + 1)) as string,
        );
        if (problem) return `a string or key in the body ${problem}`;
      }
    } else if (c === 0x7b || c === 0x5b) {
      // NOTE: the body itself is level 1; jsonBodyProblem allows 64 levels below it.
      if (++depth > MAX_JSON_DEPTH + 1) {
        return `the body is nested deeper than ${MAX_JSON_DEPTH} levels`;
      }
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return undefined;
}
