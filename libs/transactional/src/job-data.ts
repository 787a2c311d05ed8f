/**
 * `value` as the queue library will read it back from Redis: a copy through JSON (`Date`s as
 * strings, `toJSON()` applied, `undefined` members left out), taken now. A job is deferred to
 * the commit, and the caller may change or reuse the object meanwhile; Bull's and BullMQ's own
 * `add()` write it to Redis before they resolve. `undefined` (no JSON text) is returned as it
 * is. Throws what `JSON.stringify` throws (a `BigInt`, a cycle). Internal.
 */
export function jsonCopy<T>(value: T): T {
  const json = JSON.stringify(value);
  return json === undefined ? value : (JSON.parse(json) as T);
}
