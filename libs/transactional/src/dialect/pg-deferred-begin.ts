/**
 * Postgres (node-postgres) only: a transaction's `START TRANSACTION` is not sent on its own but
 * in front of the transaction's first statement, in the same write and the same round trip.
 * A transaction that sends no statement sends no `BEGIN`, `COMMIT` or `ROLLBACK` at all.
 *
 * Postgres takes a transaction's snapshot at its first statement, not at `BEGIN`, so nothing a
 * statement sees changes; only `now()` (the transaction's start time) moves to the first
 * statement. How the first statement goes out:
 * - with parameters or a name (the extended protocol): Parse/Bind/Execute of each deferred
 *   statement, then the statement's own messages and one Sync. An error in either skips the
 *   rest up to the Sync and fails the statement's query, as before;
 * - without parameters (the simple protocol): the deferred statements and the text as one
 *   multi-statement query, whose last results are the caller's;
 * - a submittable (pg-cursor, pg-query-stream, a `Query` object): the deferred statements are
 *   sent as a query of their own, and the submittable once they succeeded (a statement the
 *   application sends meanwhile may go before it); if they fail, it fails with their error and
 *   is never sent, so it cannot run outside the transaction.
 *
 * Callbacks work as with node-postgres itself.
 *
 * The same machinery sends a statement given with `sendWithCommit()` (the outbox rows of the
 * transaction's durable jobs) in front of its `COMMIT`: one round trip for both. If it fails,
 * Postgres skips the `COMMIT`, the commit fails with its error and the transaction is rolled back.
 *
 * A leading statement with a `name` is prepared under it once per connection (Parse), and only
 * bound and executed after: Postgres neither parses nor plans it again. The connection's
 * record of what it prepared is node-postgres' own (`parsedStatements`), filled on the
 * statement's ParseComplete as node-postgres does for its named queries; a Bind to a statement
 * the server no longer holds (SQLSTATE 26000: `DEALLOCATE ALL`, a pooler that moved the session)
 * fails that statement and clears the record, so the next one is parsed again.
 */

/** The part of node-postgres' `Connection` the deferred statements are written with. */
interface PgConnection {
  parse(config: { text: string; name?: string; types?: unknown[] }): void;
  bind(config: {
    portal?: string;
    statement?: string;
    values?: unknown[];
  }): void;
  execute(config: { portal?: string; rows?: number }): void;
  /** Named statements sent and not answered yet (node-postgres' record). */
  submittedNamedStatements: Record<string, string>;
  /** Named statements the server holds on this connection, by name (node-postgres' record). */
  parsedStatements: Record<string, string>;
  on(event: 'parseComplete', listener: () => void): unknown;
  removeListener(event: 'parseComplete', listener: () => void): unknown;
}

/** A statement written in front of another one; values only text, numbers or null. */
export interface LeadingStatement {
  text: string;
  values?: readonly (string | number | null)[];
  /**
   * Prepares the statement under this name on each connection, the first time it is sent
   * there; later sends only bind and execute it. The name must stand for this text alone (e.g.
   * a hash of it), as with node-postgres' named queries. Optional: a driver that does not
   * prepare statements sends the text every time.
   */
  name?: string;
}

/** SQLSTATE `invalid_sql_statement_name`: a Bind to a prepared statement the server lacks. */
const UNKNOWN_STATEMENT = '26000';
/** SQLSTATE `duplicate_prepared_statement`: a Parse of a name the server already holds. */
const DUPLICATE_STATEMENT = '42P05';

/** node-postgres' `Query` class, as `Client.Query` exports it. */
type PgQueryClass = new (
  config: unknown,
  values?: unknown,
  callback?: unknown,
) => PgQuery;

/** The part of a node-postgres `Query` the subclass overrides. */
interface PgQuery {
  name?: string;
  text?: string;
  queryMode?: string;
  callback?: (error: Error | null, result?: unknown) => void;
  requiresPreparation(): boolean;
  prepare(connection: PgConnection): void;
  handleCommandComplete(message: unknown, connection: PgConnection): void;
  handleError(error: Error, connection: PgConnection): void;
  handleReadyForQuery(connection: PgConnection): void;
}

/** The part of node-postgres' `Client` this module wraps. */
export interface DeferrableClient {
  query(...args: unknown[]): unknown;
  connection?: PgConnection;
  constructor: { Query?: PgQueryClass };
}

/** Statements TypeORM's `startTransaction()` sends on Postgres, recorded instead of sent. */
const BEGIN_STATEMENT = /^\s*(START TRANSACTION|BEGIN|SET TRANSACTION\b)/i;
/** The end of a transaction that never sent a statement: answered here, not sent. */
const END_STATEMENT = /^\s*(COMMIT|ROLLBACK)\s*$/i;

/** A node-postgres query result for a statement that was not sent. */
function answered(command: string | null) {
  return { command, rowCount: null, rows: [], fields: [], oid: null };
}

/** The caller's part of a result that starts with the deferred statements' `skip` results. */
function callerPart(result: unknown, skip: number): unknown {
  // NOTE: an empty query has no result of its own.
  if (!Array.isArray(result)) return answered(null);
  const own = result.slice(skip);
  return own.length === 1 ? own[0] : own;
}

/**
 * Builds the `Query` subclass of one node-postgres build: it writes the deferred statements in
 * front of its own extended-protocol messages, and hides its name from the client until their
 * answers are in (the client records a named statement as parsed on any ParseComplete).
 */
function deferredQueryClass(Query: PgQueryClass) {
  class DeferredBeginQuery extends (Query as unknown as new (
    ...args: unknown[]
  ) => PgQuery) {
    /** Deferred statements whose answers are still to come. */
    private pending = 0;
    // NOTE: `declare`: no field initialiser may overwrite what the base constructor set.
    declare private ownName?: string;
    /** Stops recording the deferred statements' ParseCompletes (see `recordParsed`). */
    declare private stopRecording?: () => void;
    /** Named statements whose Parse was written and not answered yet (see `recordParsed`). */
    declare private parsing?: LeadingStatement[];

    constructor(
      private readonly deferred: LeadingStatement[],
      config: unknown,
      values: unknown,
    ) {
      super(config, values);
    }

    // NOTE: the client reads `name` on every ParseComplete, the deferred statements' too.
    get name(): string | undefined {
      return this.pending > 0 ? undefined : this.ownName;
    }

    set name(value: string | undefined) {
      this.ownName = value;
    }

    prepare(connection: PgConnection) {
      // NOTE: the statements whose Parse is written, in order: one ParseComplete each.
      const parsing: LeadingStatement[] = [];
      // NOTE: a node-postgres without this record sends every statement unnamed.
      const prepared = connection.parsedStatements as
        | PgConnection['parsedStatements']
        | undefined;
      for (const statement of this.deferred) {
        const { text, values } = statement;
        const name = prepared ? (statement.name ?? '') : '';
        if (
          name === '' ||
          (prepared![name] === undefined &&
            !parsing.some((parsed) => parsed.name === name))
        ) {
          connection.parse({ text, name, types: [] });
          parsing.push({ text, name });
        }
        connection.bind({
          portal: '',
          statement: name,
          values:
            values?.map((v) => (typeof v === 'number' ? String(v) : v)) ?? [],
        });
        connection.execute({ portal: '', rows: 0 });
      }
      super.prepare(connection);
      this.pending = this.deferred.length;
      if (parsing.some((statement) => statement.name)) {
        this.recordParsed(connection, parsing);
      }
    }

    /**
     * Records each named statement of `parsing` as prepared on `connection` when its
     * ParseComplete comes (node-postgres reads this query's `name` then, which is hidden while
     * deferred statements are pending). Stops at the last one, at the server's error (it skips
     * the rest of the round trip) or at this query's ReadyForQuery: not at an error of the
     * client's own (`query_timeout`), after which the server still answers the round trip.
     */
    private recordParsed(
      connection: PgConnection,
      parsing: LeadingStatement[],
    ) {
      this.parsing = parsing;
      const onParsed = () => {
        const parsed = parsing.shift();
        if (parsed?.name)
          connection.parsedStatements[parsed.name] = parsed.text;
        if (parsing.length === 0) this.stopRecording?.();
      };
      connection.on('parseComplete', onParsed);
      this.stopRecording = () => {
        connection.removeListener('parseComplete', onParsed);
        this.stopRecording = undefined;
      };
    }

    handleReadyForQuery(connection: PgConnection) {
      this.stopRecording?.();
      super.handleReadyForQuery(connection);
    }

    handleCommandComplete(message: unknown, connection: PgConnection) {
      if (this.pending > 0) this.pending -= 1;
      super.handleCommandComplete(message, connection);
    }

    handleError(error: Error, connection: PgConnection) {
      const { code, severity } = error as {
        code?: unknown;
        severity?: unknown;
      };
      if (typeof severity === 'string') {
        // NOTE: the server's error: it skips the rest of the round trip, no ParseComplete
        // follows. A Parse it refused because the name exists means the name is prepared.
        const refused = this.parsing?.[0];
        if (code === DUPLICATE_STATEMENT && refused?.name)
          connection.parsedStatements[refused.name] = refused.text;
        this.stopRecording?.();
      }
      // NOTE: a deferred statement failed, so the server skipped this query's Parse: the name
      // the client thinks was submitted must be parsed again next time.
      if (this.pending > 0 && this.ownName)
        delete connection.submittedNamedStatements[this.ownName];
      if (code === UNKNOWN_STATEMENT) {
        // NOTE: the server lost what this connection prepared (DEALLOCATE, a pooler): parse
        // the deferred statements again next time.
        for (const { name } of this.deferred)
          if (name) delete connection.parsedStatements[name];
      }
      this.pending = 0;
      super.handleError(error, connection);
    }
  }
  return DeferredBeginQuery;
}

const classes = new WeakMap<
  PgQueryClass,
  ReturnType<typeof deferredQueryClass>
>();

/** Whether `client` is a node-postgres client this module can defer the `BEGIN` of. */
export function canDeferBegin(client: unknown): client is DeferrableClient {
  const candidate = client as Partial<DeferrableClient> | undefined;
  return (
    typeof candidate?.query === 'function' &&
    typeof candidate.constructor?.Query === 'function' &&
    typeof candidate.connection?.parse === 'function'
  );
}

/**
 * Defers the `BEGIN` of the transaction about to open on `client` (see the module comment):
 * until `restore()`, `client.query` records the transaction's opening statements and sends them
 * with the first other statement. Call `restore()` before the client goes back to its pool.
 */
export class DeferredBegin {
  /** Opening statements recorded and not yet sent. */
  private deferred: LeadingStatement[] = [];
  /** Set once the opening statements went out (or the transaction ended without any). */
  private done = false;
  /** The statement to send in front of COMMIT, if any (see `sendWithCommit`). */
  private beforeCommit?: LeadingStatement;
  private readonly original: (...args: unknown[]) => unknown;
  private readonly hadOwnQuery: boolean;

  constructor(private readonly client: DeferrableClient) {
    this.original = client.query;
    this.hadOwnQuery = Object.prototype.hasOwnProperty.call(client, 'query');
    client.query = (...args: unknown[]) => this.query(args);
  }

  /**
   * Sends `statement` in front of the transaction's `COMMIT`, in the same round trip (and the
   * opening statements too, if none went out yet). A `ROLLBACK` drops it.
   */
  sendWithCommit(statement: LeadingStatement): void {
    this.beforeCommit = statement;
  }

  /** Puts `client.query` back. */
  restore(): void {
    this.beforeCommit = undefined;
    if (this.hadOwnQuery) this.client.query = this.original;
    else delete (this.client as { query?: unknown }).query;
  }

  private send(args: unknown[]): unknown {
    return this.original.apply(this.client, args);
  }

  private query(args: unknown[]): unknown {
    if (this.done && !this.beforeCommit) return this.send(args);
    const [config, values, callback] = args;
    const text =
      typeof config === 'string'
        ? config
        : (config as { text?: unknown } | null)?.text;
    const submittable =
      typeof (config as { submit?: unknown } | null)?.submit === 'function';
    const end =
      !submittable && typeof text === 'string' && END_STATEMENT.test(text);
    if (end) return this.end(text.trim().toUpperCase(), args);
    if (this.done) return this.send(args);
    if (!submittable && typeof text === 'string') {
      if (BEGIN_STATEMENT.test(text) && this.deferred.length < 4) {
        this.deferred.push({ text });
        return this.answer(
          answered(text.trim().split(/\s+/)[0].toUpperCase()),
          args,
        );
      }
    }
    const deferred = this.deferred;
    this.done = true;
    this.deferred = [];
    if (deferred.length === 0) return this.send(args);
    if (submittable) return this.sendAfter(deferred, args);
    return this.sendWithCallback(deferred, config, values, callback);
  }

  /** COMMIT or ROLLBACK (`command`), with what must go in front of it. */
  private end(command: string, args: unknown[]): unknown {
    const leading = command === 'COMMIT' ? this.beforeCommit : undefined;
    this.beforeCommit = undefined;
    const deferred = this.done ? [] : this.deferred;
    const sent = this.done;
    this.done = true;
    this.deferred = [];
    if (!leading) {
      // NOTE: nothing was sent, so there is no transaction to end.
      return sent ? this.send(args) : this.answer(answered(command), args);
    }
    const [config, values, callback] = args;
    const text =
      typeof config === 'string' ? config : (config as { text: string }).text;
    return this.sendWithCallback(
      [...deferred, leading],
      { text, queryMode: 'extended' },
      values,
      callback,
    );
  }

  /** Answers a statement that is not sent, in the calling convention the caller used. */
  private answer(result: unknown, args: unknown[]): unknown {
    const callback = args.find((arg) => typeof arg === 'function') as
      | ((error: Error | null, result: unknown) => void)
      | undefined;
    if (!callback) return Promise.resolve(result);
    process.nextTick(() => callback(null, result));
    return undefined;
  }

  /** `sendWith`, answering a callback if the caller passed one instead of taking a promise. */
  private sendWithCallback(
    deferred: LeadingStatement[],
    config: unknown,
    values: unknown,
    callback: unknown,
  ): unknown {
    const done = [values, callback].find((arg) => typeof arg === 'function') as
      | ((error: Error | null, result?: unknown) => void)
      | undefined;
    const sent = this.sendWith(
      deferred,
      config,
      typeof values === 'function' ? undefined : values,
    );
    if (!done) return sent;
    sent.then(
      (result) => done(null, result),
      (error: Error) => done(error),
    );
    return undefined;
  }

  /** A statement, promise style: one round trip for it and the statements in front of it. */
  private sendWith(
    deferred: LeadingStatement[],
    config: unknown,
    values: unknown,
  ) {
    const Query = this.client.constructor.Query!;
    let DeferredBeginQuery = classes.get(Query);
    if (!DeferredBeginQuery) {
      DeferredBeginQuery = deferredQueryClass(Query);
      classes.set(Query, DeferredBeginQuery);
    }
    const query = new DeferredBeginQuery(deferred, config, values);
    // NOTE: without parameters anywhere, the simple protocol: one multi-statement query, the
    // deferred statements first (`prepare()`, which writes them otherwise, is not called).
    if (!query.requiresPreparation()) {
      if (deferred.some((statement) => statement.values?.length))
        query.queryMode = 'extended';
      else
        query.text = `${deferred.map((d) => d.text).join(';\n')};\n${query.text ?? ''}`;
    }
    return this.run(query, deferred.length);
  }

  private run(query: PgQuery, skip: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      query.callback = (error, result) =>
        error ? reject(error) : resolve(callerPart(result, skip));
      this.send([query]);
    });
  }

  /**
   * The first statement is a submittable (pg-cursor, pg-query-stream, a `Query` object): the
   * deferred statements go first, as a query of their own, and the submittable is sent once they
   * succeeded; if they fail, it fails with their error and is never sent.
   */
  private sendAfter(deferred: LeadingStatement[], args: unknown[]): unknown {
    const query = args[0] as PgQuery;
    const callback = args.find((arg, i) => i > 0 && typeof arg === 'function');
    if (callback && !query.callback)
      query.callback = callback as PgQuery['callback'];
    this.send([
      deferred.map((d) => d.text).join(';\n'),
      (error: Error | null) => {
        if (!error) this.send(args);
        else if (this.client.connection)
          query.handleError(error, this.client.connection);
        else query.callback?.(error);
      },
    ]);
    return query;
  }
}
