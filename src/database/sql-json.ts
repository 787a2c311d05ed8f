/**
 * `timestamp` (an SQL `timestamptz` expression) as text in the form JavaScript's
 * `Date.prototype.toISOString()` writes the `Date` node-postgres reads it as: UTC, the fraction
 * truncated to milliseconds, the year in 4 digits from 0000 to 9999 and as a signed 6-digit year
 * outside them (1 BC is ISO's year 0000). JSON built in SQL with it reads exactly as the
 * `JSON.stringify` of the row's `Date`s, whatever the session's time zone.
 */
export function isoTimestampSql(timestamp: string): string {
  return `(SELECT CASE WHEN y BETWEEN 0 AND 9999 THEN lpad(y::text, 4, '0')
                      WHEN y < 0 THEN '-' || lpad((-y)::text, 6, '0')
                      ELSE '+' || lpad(y::text, 6, '0') END
                 || to_char(u, '-MM-DD"T"HH24:MI:SS.MS"Z"')
     FROM (SELECT u, extract(year FROM u)::int + (extract(year FROM u) < 0)::int AS y
             FROM (SELECT (${timestamp}) AT TIME ZONE 'UTC' AS u) utc) ymd)`;
}
