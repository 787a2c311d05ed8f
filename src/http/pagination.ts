import { ApiPropertyOptional } from '@nestjs/swagger';
import { BadRequestException } from '@nestjs/common';
import { Transform } from 'class-transformer';
import {
  IsInt,
  IsOptional,
  IsString,
  Max,
  MaxLength,
  Min,
} from 'class-validator';
import { parseDateTime } from './date-time';

/** Items per page when `limit` is not given. */
export const DEFAULT_PAGE_SIZE = 50;

/** Most items one page may hold. */
export const MAX_PAGE_SIZE = 100;

/**
 * `limit` and `cursor` of every list route. `limit` must be a whole number in
 * [1, MAX_PAGE_SIZE]; `cursor` is the `nextCursor` of the previous page, passed unchanged.
 */
export class PageQueryDto {
  @ApiPropertyOptional({
    minimum: 1,
    maximum: MAX_PAGE_SIZE,
    default: DEFAULT_PAGE_SIZE,
    description: 'Items per page.',
  })
  @IsOptional()
  // NOTE: query values are strings; Number('') is 0 and Number('1x') NaN: both refused below.
  @Transform(({ value }) =>
    typeof value === 'string' && value.trim() !== '' ? Number(value) : value,
  )
  @IsInt({ message: `limit must be a whole number from 1 to ${MAX_PAGE_SIZE}` })
  @Min(1, {
    message: `limit must be a whole number from 1 to ${MAX_PAGE_SIZE}`,
  })
  @Max(MAX_PAGE_SIZE, {
    message: `limit must be a whole number from 1 to ${MAX_PAGE_SIZE}`,
  })
  limit?: number;

  @ApiPropertyOptional({
    maxLength: 200,
    description: 'The `nextCursor` of the previous page, unchanged.',
  })
  @IsOptional()
  @IsString({ message: 'cursor must be the nextCursor of a previous page' })
  @MaxLength(200, {
    message: 'cursor must be the nextCursor of a previous page',
  })
  cursor?: string;
}

/** One page of a list, and the cursor of the next one (null on the last page). */
export interface Page<T> {
  data: T[];
  nextCursor: string | null;
}

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** SQL giving a row's position text: its exact (microsecond, UTC) time. */
export const positionSql = (column: string) =>
  `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** A keyset position: a timestamp (as `positionSql` spells it) and an id to break ties. */
export interface TimePosition {
  at: string;
  id: string;
}

function invalidCursor() {
  return new BadRequestException(
    'cursor is not valid: pass the nextCursor of a previous page of the same list unchanged',
  );
}

/** The opaque cursor of a position (base64url JSON). */
export function encodeCursor(position: TimePosition | number): string {
  const value =
    typeof position === 'number' ? [position] : [position.at, position.id];
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function decode(cursor: string): unknown {
  try {
    return JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalidCursor();
  }
}

/** The time position a cursor holds; 400 for anything else. */
export function decodeTimeCursor(cursor: string): TimePosition {
  const value = decode(cursor);
  if (
    !Array.isArray(value) ||
    value.length !== 2 ||
    typeof value[0] !== 'string' ||
    typeof value[1] !== 'string' ||
    !TIMESTAMP.test(value[0]) ||
    !UUID.test(value[1]) ||
    // NOTE: a date Postgres would refuse (2024-02-30, year 0000) must be a 400, not a 500.
    parseDateTime(value[0]) === undefined
  ) {
    throw invalidCursor();
  }
  return { at: value[0], id: value[1] };
}

/** The number a cursor holds (attempt lists); 400 for anything else. */
export function decodeNumberCursor(cursor: string): number {
  const value = decode(cursor);
  if (
    !Array.isArray(value) ||
    value.length !== 1 ||
    !Number.isInteger(value[0]) ||
    value[0] < 0 ||
    value[0] > 2 ** 31 - 1
  ) {
    throw invalidCursor();
  }
  return value[0] as number;
}

/**
 * Cuts the `limit + 1` rows a page query fetched to `limit`, and gives the cursor of the
 * next page when there is one.
 */
export function toPage<R, T>(
  rows: R[],
  limit: number,
  present: (row: R) => T,
  positionOf: (row: R) => TimePosition | number,
): Page<T> {
  const more = rows.length > limit;
  const kept = more ? rows.slice(0, limit) : rows;
  return {
    data: kept.map(present),
    nextCursor: more ? encodeCursor(positionOf(kept[kept.length - 1])) : null,
  };
}
