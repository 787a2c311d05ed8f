import { z } from 'zod';

/**
 * zod fields for environment variables: each reads a string (unset or empty means the
 * default), checks it and turns it into the value the service uses. A failed check names the
 * value it got; the variable's name is added by the schema (the issue's path).
 */

/** An integer >= `min` (and <= `max`), `fallback` when unset. */
export function intVar(
  fallback: number,
  min = 1,
  max = Number.MAX_SAFE_INTEGER,
) {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return fallback;
      const value = Number(raw.trim());
      if (
        !/^\s*-?\d+\s*$/.test(raw) ||
        !Number.isSafeInteger(value) ||
        value < min ||
        value > max
      ) {
        const range =
          max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `${min}..${max}`;
        ctx.addIssue({
          code: 'custom',
          message: `must be an integer ${range}, got "${raw}"`,
        });
        return z.NEVER;
      }
      return value;
    });
}

/** An integer `min..max`, or undefined when unset (the default is decided elsewhere). */
export function optionalIntVar(min = 0, max = Number.MAX_SAFE_INTEGER) {
  return intVar(Number.NaN, min, max).transform((value) =>
    Number.isNaN(value) ? undefined : value,
  );
}

/** An integer port (0..65535), or undefined when unset. */
export function optionalPortVar() {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return undefined;
      const value = Number(raw);
      if (!/^\d{1,5}$/.test(raw.trim()) || value > 65535) {
        ctx.addIssue({
          code: 'custom',
          message: `must be a port number 0..65535, got "${raw}"`,
        });
        return z.NEVER;
      }
      return value;
    });
}

/** One of `values`, `fallback` when unset. */
export function enumVar<T extends string>(values: readonly T[], fallback: T) {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw === '') return fallback;
      if (!(values as readonly string[]).includes(raw)) {
        ctx.addIssue({
          code: 'custom',
          message: `must be one of ${values.join(', ')}, got "${raw}"`,
        });
        return z.NEVER;
      }
      return raw as T;
    });
}

/**
 * A URL with one of `protocols` (without the colon) and a host, `fallback` when unset. The
 * message never repeats the value: a URL may carry a password.
 */
export function urlVar(protocols: readonly string[], fallback: string) {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw === '') return fallback;
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        ctx.addIssue({
          code: 'custom',
          message: `must be a URL such as ${fallback} (the value is not a URL)`,
        });
        return z.NEVER;
      }
      if (!protocols.includes(url.protocol.slice(0, -1)) || !url.hostname) {
        ctx.addIssue({
          code: 'custom',
          message: `must be a ${protocols.map((p) => `${p}://`).join(' or ')} URL with a host, got scheme "${url.protocol}"`,
        });
        return z.NEVER;
      }
      return raw;
    });
}

/**
 * A value `parse` accepts (it throws with a message naming what is wrong), `fallback` when
 * unset; for formats with a parser of their own (subnets, keys, schedules).
 */
export function parsedVar<T>(parse: (raw: string | undefined) => T) {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      try {
        return parse(raw);
      } catch (error) {
        ctx.addIssue({
          code: 'custom',
          message: error instanceof Error ? error.message : String(error),
        });
        return z.NEVER;
      }
    });
}

/** An http(s) URL, or undefined when unset (the value is not echoed: it may hold credentials). */
export function optionalHttpUrlVar() {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw === '') return undefined;
      try {
        const url = new URL(raw);
        if (url.protocol === 'http:' || url.protocol === 'https:') return raw;
      } catch {
        // reported below
      }
      ctx.addIssue({ code: 'custom', message: 'must be an http(s) URL' });
      return z.NEVER;
    });
}
