/** Event type names: dot-separated words of letters, digits and underscores. */
export const EVENT_TYPE_PATTERN = /^[a-zA-Z0-9_]+(\.[a-zA-Z0-9_]+)*$/;

/** What a person should read when a type is refused. */
export const EVENT_TYPE_MESSAGE =
  'must be dot-separated words of letters, digits and underscores, e.g. "trip.delayed"';
