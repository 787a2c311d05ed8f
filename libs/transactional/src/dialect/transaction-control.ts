import type { SqlDialect } from './sql-dialect';

/**
 * Finds transaction control statements (`BEGIN`, `START TRANSACTION`, `COMMIT`, `END`,
 * `ROLLBACK [TO]`, `ABORT`, `SAVEPOINT`, `RELEASE`, `PREPARE TRANSACTION`, MySQL's `XA`) in SQL
 * text an application sends on a transaction's connection. Sent by hand inside a scope, they
 * end the transaction or open a savepoint the library cannot see, so jobs would be enqueued for
 * rows that were rolled back or dropped for rows that were committed. Internal.
 *
 * The text is split into statements at top-level semicolons (a multi-statement query on the
 * simple protocol), skipping string literals (`'...'`, Postgres' `E'...'` and `$tag$...$tag$`,
 * MySQL's `"..."` with backslash escapes), quoted identifiers and comments (`--`, nested
 * `/* *\/` on Postgres, `#` and `-- ` on MySQL, whose `/*! *\/` comments are read as the SQL
 * they hold); each statement's first two words decide. Scanning stops at a `CREATE` statement:
 * a routine's body (`BEGIN ATOMIC ... END`, a MySQL `BEGIN ... END`) holds semicolons and `END`
 * of its own, and a body must never be mistaken for statements.
 */

/** A statement that starts with one of these words may be transaction control. */
const LEADING_WORD =
  /^\s*(?:begin|start|commit|end|rollback|abort|savepoint|release|prepare|xa)\b/i;
/** Text that may hide a statement after the first one, or the first one behind a comment. */
const MAY_HIDE = /;|^\s*(?:--|\/\*|#)/;

/** The first two words of each statement of `sql` that is transaction control, if any. */
export function transactionControlIn(
  sql: unknown,
  dialect: SqlDialect,
): string | undefined {
  if (typeof sql !== 'string') return undefined;
  // NOTE: nearly every statement takes neither test (one statement, led by a keyword).
  if (!LEADING_WORD.test(sql) && !MAY_HIDE.test(sql)) return undefined;
  for (const [first, second] of statementHeads(sql, dialect)) {
    if (isControl(first, second)) return `${first} ${second}`.trim();
  }
  return undefined;
}

function isControl(first: string, second: string): boolean {
  switch (first) {
    case 'BEGIN':
    case 'COMMIT':
    case 'END':
    case 'ROLLBACK':
    case 'ABORT':
    case 'SAVEPOINT':
    case 'RELEASE':
    case 'XA':
      return true;
    case 'START':
    case 'PREPARE':
      return second === 'TRANSACTION';
    default:
      return false;
  }
}

const WORD = /[A-Za-z_]+/y;

/** The word at `at` (upper case, '' if none) and where it ends. */
function wordAt(sql: string, at: number): [string, number] {
  WORD.lastIndex = at;
  const match = WORD.exec(sql);
  return match ? [match[0].toUpperCase(), WORD.lastIndex] : ['', at];
}

const IDENTIFIER_CHAR = /[A-Za-z0-9_$]/;

/** The first two words of every statement of `sql`. */
function* statementHeads(
  sql: string,
  dialect: SqlDialect,
): Generator<[string, string]> {
  const mysql = dialect === 'mysql';
  let i = 0;
  let atStart = true;
  while (i <= sql.length) {
    if (atStart) {
      atStart = false;
      const [first, end] = wordAt(sql, skipSpace(sql, i, mysql));
      const [second] = wordAt(sql, skipSpace(sql, end, mysql));
      if (first === 'CREATE') return;
      if (first) yield [first, second];
      i = end;
      continue;
    }
    if (i === sql.length) break;
    const c = sql[i];
    if (c === ';') {
      atStart = true;
      i += 1;
    } else if (c === "'") {
      // NOTE: Postgres reads backslash escapes only in E'...' strings; MySQL in every string.
      const prefix = i > 0 ? sql[i - 1] : '';
      const escaped =
        mysql ||
        ((prefix === 'E' || prefix === 'e') &&
          !(i > 1 && IDENTIFIER_CHAR.test(sql[i - 2])));
      i = skipQuoted(sql, i, "'", escaped);
    } else if (c === '"') {
      i = skipQuoted(sql, i, '"', mysql);
    } else if (c === '`' && mysql) {
      i = skipQuoted(sql, i, '`', false);
    } else if (
      c === '$' &&
      !mysql &&
      !(i > 0 && IDENTIFIER_CHAR.test(sql[i - 1]))
    ) {
      i = skipDollarQuoted(sql, i);
    } else if (isCommentStart(sql, i, mysql)) {
      i = skipComment(sql, i, mysql);
    } else {
      i = mysql ? skipExecutableComment(sql, i) : i + 1;
    }
  }
}

const EXECUTABLE_COMMENT = /\/\*!\d*|\*\//y;

/**
 * MySQL: past the marks of an executable comment (`/*!80000` and its `*\/`), whose text is SQL
 * to scan like any other; one character otherwise.
 */
function skipExecutableComment(sql: string, at: number): number {
  EXECUTABLE_COMMENT.lastIndex = at;
  return EXECUTABLE_COMMENT.test(sql) ? EXECUTABLE_COMMENT.lastIndex : at + 1;
}

/** Past whitespace and comments from `at`. */
function skipSpace(sql: string, at: number, mysql: boolean): number {
  let i = at;
  for (;;) {
    while (i < sql.length && /\s/.test(sql[i])) i += 1;
    if (isCommentStart(sql, i, mysql)) {
      i = skipComment(sql, i, mysql);
      continue;
    }
    if (!mysql) return i;
    const past = skipExecutableComment(sql, i);
    if (past === i + 1) return i;
    i = past;
  }
}

function isCommentStart(sql: string, i: number, mysql: boolean): boolean {
  const c = sql[i];
  const next = sql[i + 1];
  if (c === '-' && next === '-')
    // NOTE: MySQL needs a space (or control character) after the two dashes.
    return !mysql || i + 2 >= sql.length || sql.charCodeAt(i + 2) <= 32;
  if (c === '/' && next === '*') return !mysql || sql[i + 2] !== '!';
  return mysql && c === '#';
}

/** Past the comment at `at` (the end of the text if it is not closed). */
function skipComment(sql: string, at: number, mysql: boolean): number {
  if (sql[at] !== '/') {
    const end = sql.indexOf('\n', at);
    return end === -1 ? sql.length : end + 1;
  }
  // NOTE: Postgres nests block comments; MySQL ends one at the first */.
  let depth = 0;
  let i = at;
  while (i < sql.length) {
    if (sql[i] === '/' && sql[i + 1] === '*') {
      depth = mysql ? 1 : depth + 1;
      i += 2;
    } else if (sql[i] === '*' && sql[i + 1] === '/') {
      depth -= 1;
      i += 2;
      if (depth === 0) return i;
    } else {
      i += 1;
    }
  }
  return sql.length;
}

/** Past the literal or identifier quoted by `quote` at `at` (doubled quotes escape it). */
function skipQuoted(
  sql: string,
  at: number,
  quote: string,
  backslashEscapes: boolean,
): number {
  let i = at + 1;
  while (i < sql.length) {
    const c = sql[i];
    if (backslashEscapes && c === '\\') {
      i += 2;
    } else if (c === quote) {
      if (sql[i + 1] !== quote) return i + 1;
      i += 2;
    } else {
      i += 1;
    }
  }
  return sql.length;
}

const DOLLAR_TAG = /\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/y;

/** Past the `$tag$...$tag$` string at `at`, or one character if `$` does not open one. */
function skipDollarQuoted(sql: string, at: number): number {
  DOLLAR_TAG.lastIndex = at;
  const match = DOLLAR_TAG.exec(sql);
  if (!match) return at + 1;
  const end = sql.indexOf(match[0], DOLLAR_TAG.lastIndex);
  return end === -1 ? sql.length : end + match[0].length;
}
