import { BadRequestException } from '@nestjs/common';
import { ValidateBy, type ValidationOptions } from 'class-validator';

/** The form every date-time the API reads must take (RFC 3339 `date-time`). */
export const DATE_TIME_FORMAT =
  'YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM), e.g. 2024-01-31T09:30:00Z';

/** Furthest a UTC offset may be from UTC, in minutes (real zones span -12:00 to +14:00). */
const MAX_OFFSET_MINUTES = 14 * 60;

const DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:(Z)|([+-])(\d{2}):(\d{2}))$/;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

const isLeapYear = (year: number) =>
  year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);

const daysIn = (year: number, month: number) =>
  month === 2 && isLeapYear(year) ? 29 : DAYS_IN_MONTH[month - 1];

/**
 * Reads a date-time in the one form the API accepts (the RFC 3339 profile of ISO 8601):
 * `YYYY-MM-DDTHH:MM:SS`, an optional fraction of up to 9 digits, then `Z` or `±HH:MM`.
 * The year is 0001-9999, the date a real calendar date, the hour 00-23 (no leap second
 * `:60`), the offset at most ±14:00. Everything it accepts, both JavaScript's `Date` and
 * Postgres read as the same instant; anything else (`2024`, `2024-W01-1`, `10:00:00,5`,
 * `+23:59`, year 0000, ...) is `undefined`. The instant is to the millisecond; the text,
 * unchanged, keeps finer fractions for Postgres.
 */
export function parseDateTime(text: unknown): Date | undefined {
  if (typeof text !== 'string') return undefined;
  const match = DATE_TIME.exec(text);
  if (!match) return undefined;
  const [year, month, day, hour, minute, second] = match
    .slice(1, 7)
    .map(Number);
  const offsetHours = match[10] === undefined ? 0 : Number(match[10]);
  const offsetMinutes = match[11] === undefined ? 0 : Number(match[11]);
  if (
    year < 1 ||
    month < 1 ||
    month > 12 ||
    day < 1 ||
    day > daysIn(year, month) ||
    hour > 23 ||
    minute > 59 ||
    second > 59 ||
    offsetMinutes > 59 ||
    offsetHours * 60 + offsetMinutes > MAX_OFFSET_MINUTES
  ) {
    return undefined;
  }
  const millis = Number(((match[7] ?? '') + '000').slice(0, 3));
  const instant = new Date(
    Date.UTC(2000, month - 1, day, hour, minute, second, millis),
  );
  // NOTE: Date.UTC maps years 0-99 to 1900-1999; set the year on its own.
  instant.setUTCFullYear(year);
  const sign = match[9] === '-' ? -1 : 1;
  return new Date(
    instant.getTime() - sign * (offsetHours * 60 + offsetMinutes) * 60_000,
  );
}

/** The 400 message for a date-time field that is not in the accepted form. */
export const dateTimeMessage = (field: string) =>
  `${field} must be an ISO 8601 date-time in the RFC 3339 form ${DATE_TIME_FORMAT}; ` +
  'the year 0001-9999, a real calendar date, an offset of at most ±14:00';

/** The instant of a date-time field; 400 naming the field and the format for anything else. */
export function requireDateTime(text: unknown, field: string): Date {
  const instant = parseDateTime(text);
  if (!instant) throw new BadRequestException(dateTimeMessage(field));
  return instant;
}

/** A DTO property that must be a date-time `parseDateTime` reads. */
export function IsDateTime(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'isDateTime',
      validator: {
        validate: (value: unknown) => parseDateTime(value) !== undefined,
        defaultMessage: (args) => dateTimeMessage(args?.property ?? 'value'),
      },
    },
    options,
  );
}
