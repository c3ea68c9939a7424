/**
 * `Sql` on PostgreSQL, over Bun's SQL client: the same repositories and the same portable statements as on
 * SQLite (../sql.ts states the rules), with rows that the same row mappers (../rows.ts) decode into the same
 * values.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { ReservedSQL, SQL } from "bun";
import { causeChain, type RawRow, runReporting, type Sql, type SqlParam, UniqueViolation } from "../sql";

/** Type OIDs this client converts (pg_type). */
const OID = {
  bool: 16,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  json: 114,
  float4: 700,
  float8: 701,
  bpchar: 1042,
  varchar: 1043,
  numeric: 1700,
  jsonb: 3802,
} as const;

/** How many times `transaction` runs `fn` in all when PostgreSQL gives up on it for a conflict. */
export const TRANSACTION_ATTEMPTS = 4;
/** Serialization failure and deadlock: the transaction lost a conflict, and running it again may succeed. */
const RETRYABLE = new Set(["40001", "40P01"]);
/** Statement texts whose translation and parameter types are kept, per client (Bun keeps 1,024 per connection). */
const CACHE_LIMIT = 2048;

/** One open transaction: its connection, what runs after it commits, how many savepoints it has opened. */
type TxState = {
  conn: ReservedSQL;
  afterCommit: (() => void)[];
  savepoints: number;
  /** `fn` has settled: nothing joins any more. */
  ended: boolean;
  /** Settles once COMMIT or ROLLBACK has been answered. */
  closed: Promise<void>;
  /** Statements sent without awaiting (savepoint releases), each settled to its error or null. */
  unawaited: Promise<unknown>[];
};

/** What a statement text needs to run: the text with `$n`, and the server's types of its parameters. */
type Prepared = { text: string; types: readonly number[] | null };

/**
 * `Sql` on a pool of PostgreSQL connections.
 *
 * - `?` placeholders become `$1, $2, …` (never inside a string literal, a quoted identifier or a comment),
 *   and every statement is a named prepared statement on its connection (Bun's `prepare: true`).
 * - Parameters are bound as a SQLite statement binds them, converted to the types the server infers for
 *   them (read once per statement text, with `PREPARE`): 0/1 to a `boolean`, JSON text to `jsonb` (Bun
 *   would store a string bound to jsonb as a JSON *string*), a number to `text` as its digits.
 * - Rows come back as SQLite's do for the row mappers: `bigint` and `numeric` (counts, sums, epoch-ms times)
 *   as numbers, exact up to 2^53; `jsonb` as its JSON text; booleans as booleans (the mappers read 0/1 and
 *   true/false alike).
 * - A transaction holds one reserved connection for its whole run; code finds it through an
 *   AsyncLocalStorage, so every statement `fn` issues, however deep, joins it, and statements issued outside
 *   it run on the pool at once, concurrently (they see only committed rows: there is no gate, unlike SQLite).
 * - A unique violation (SQLSTATE 23505) is thrown as `UniqueViolation`, as on SQLite.
 */
export class PgClient implements Sql {
  readonly pool: SQL;
  readonly #als = new AsyncLocalStorage<TxState>();
  readonly #prepared = new Map<string, Prepared>();

  constructor(pool: SQL) {
    this.pool = pool;
  }

  /** Whether the caller runs inside an open transaction of this client. */
  get inside(): boolean {
    const state = this.#als.getStore();
    return state !== undefined && !state.ended;
  }

  async all<T = RawRow>(text: string, params: readonly SqlParam[] = []): Promise<T[]> {
    return (await this.#query(text, params)) as T[];
  }

  async get<T = RawRow>(text: string, params: readonly SqlParam[] = []): Promise<T | null> {
    return ((await this.#query(text, params))[0] as T | undefined) ?? null;
  }

  async run(text: string, params: readonly SqlParam[] = []): Promise<{ changes: number }> {
    const result = await this.#query(text, params);
    return { changes: (result as unknown as { affectedRows: number }).affectedRows };
  }

  /** Runs `fn` outside any transaction's store: what it starts never joins the caller's transaction. */
  outside<T>(fn: () => T): T {
    return this.#als.exit(fn);
  }

  /**
   * Runs `fn` as one transaction (READ COMMITTED) on a reserved connection; a call inside an open one joins
   * it. When PostgreSQL aborts it for a serialization failure or a deadlock (40001, 40P01), the outermost
   * call rolls back and runs `fn` again from the start, after a short random pause, up to
   * TRANSACTION_ATTEMPTS runs in all; then the last error is thrown. `fn` only does database work (the
   * interface's rule), so running it again is safe; the `afterCommit` callbacks of a failed run are dropped.
   */
  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    if (this.inside) return fn();
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#once(fn);
      } catch (err) {
        if (attempt >= TRANSACTION_ATTEMPTS || !RETRYABLE.has(sqlState(err))) throw err;
        // A pause (5–15 ms, doubling), so the winner of the conflict, woken by our rollback, takes its locks
        // before we ask for them again: retrying at once can overtake it and deadlock a second time.
        await Bun.sleep((0.5 + Math.random()) * 10 * 2 ** (attempt - 1));
      }
    }
  }

  async #once<T>(fn: () => Promise<T>): Promise<T> {
    const conn = await this.pool.reserve();
    const { promise: closed, resolve: close } = Promise.withResolvers<void>();
    const state: TxState = { conn, afterCommit: [], savepoints: 0, ended: false, closed, unawaited: [] };
    let committed = false;
    try {
      // Not awaited: the connection sends fn's first statement right behind it, saving a round trip. Its
      // outcome is read after fn (a failed BEGIN fails fn's statements first anyway).
      const begun = conn.unsafe("BEGIN").then(
        () => null,
        (err: unknown) => err,
      );
      let out: T;
      try {
        out = await this.#als.run(state, fn);
        const failed = (await begun) ?? (await Promise.all(state.unawaited)).find((e) => e !== null);
        if (failed) throw failed;
      } finally {
        // From here the store no longer counts as inside: what it scheduled (a timer) runs on the pool,
        // once the transaction is closed (#query), so it sees the commit as it would on SQLite.
        state.ended = true;
      }
      await conn.unsafe("COMMIT");
      committed = true;
      return out;
    } catch (err) {
      await conn.unsafe("ROLLBACK").catch(() => undefined);
      throw translate(err);
    } finally {
      await conn.release().catch(() => undefined);
      close();
      if (committed) for (const cb of state.afterCommit) runReporting(cb);
    }
  }

  async savepoint<T>(fn: () => Promise<T>): Promise<T> {
    const state = this.#als.getStore();
    if (!state || state.ended) return this.transaction(fn);
    const name = `easel_sp_${++state.savepoints}`;
    // SAVEPOINT and RELEASE are pipelined (sent, not awaited): the connection runs them in order with fn's
    // statements, so they add no round trip. A failed SAVEPOINT fails fn's statements after it; a failed
    // RELEASE aborts the transaction, and the transaction reports it before its COMMIT (which PostgreSQL would
    // answer with a silent ROLLBACK).
    const opened = settled(state.conn.unsafe(`SAVEPOINT ${name}`));
    try {
      const out = await fn();
      const failed = await opened;
      if (failed) throw failed;
      state.unawaited.push(settled(state.conn.unsafe(`RELEASE SAVEPOINT ${name}`)));
      return out;
    } catch (err) {
      if (await opened) throw err;
      await state.conn.unsafe(`ROLLBACK TO SAVEPOINT ${name}; RELEASE SAVEPOINT ${name}`).simple();
      throw err;
    }
  }

  afterCommit(fn: () => void): void {
    const state = this.#als.getStore();
    if (state && !state.ended) state.afterCommit.push(fn);
    else fn();
  }

  /** Closes the pool once its running queries have ended. */
  close(): Promise<void> {
    return this.pool.close();
  }

  async #query(text: string, params: readonly SqlParam[]): Promise<RawRow[]> {
    const state = this.#als.getStore();
    if (state?.ended) await state.closed;
    const conn: SQL = state && !state.ended ? state.conn : this.pool;
    try {
      const prepared = this.#prepared.get(text) ?? (await this.#prepare(conn, text, params.length > 0));
      const values = prepared.types ? params.map((v, i) => this.#bind(v, prepared.types![i], i)) : params;
      return fromPg(await conn.unsafe(prepared.text, values as SqlParam[]));
    } catch (err) {
      throw translate(err);
    }
  }

  /**
   * Translates `text` and reads the types the server infers for its parameters. `PREPARE` is the only way
   * to learn them before Bun binds (Bun types a JS number as int4/int8 and sends strings untyped). A
   * statement whose parameters the server cannot type alone (`SELECT ? AS x`) is bound as it is; one that
   * fails to prepare (a missing table) is not remembered, and then fails on its own.
   */
  async #prepare(conn: SQL, text: string, hasParams: boolean): Promise<Prepared> {
    const pgText = toDollarParams(text);
    if (!hasParams) return this.#remember(text, { text: pgText, types: null });
    const describe = `PREPARE easel_describe AS ${pgText};
      SELECT parameter_types::oid[] AS types FROM pg_prepared_statements WHERE name = 'easel_describe';
      DEALLOCATE easel_describe`;
    const inTx = conn !== this.pool;
    try {
      // In a transaction, a savepoint keeps a failed PREPARE from aborting it.
      const results = (await conn
        .unsafe(inTx ? `SAVEPOINT easel_describe; ${describe}; RELEASE SAVEPOINT easel_describe` : describe)
        .simple()) as unknown as { types: number[] }[][];
      const types = results[inTx ? 2 : 1]![0]!.types.map(Number);
      return this.#remember(text, { text: pgText, types });
    } catch (err) {
      if (inTx)
        await conn.unsafe("ROLLBACK TO SAVEPOINT easel_describe; RELEASE SAVEPOINT easel_describe").simple();
      const untyped = { text: pgText, types: null };
      return sqlState(err) === "42P18" ? this.#remember(text, untyped) : untyped;
    }
  }

  #remember(text: string, prepared: Prepared): Prepared {
    if (this.#prepared.size >= CACHE_LIMIT) this.#prepared.delete(this.#prepared.keys().next().value!);
    this.#prepared.set(text, prepared);
    return prepared;
  }

  /** A value bound the SQLite way, as the parameter's PostgreSQL type takes it. */
  #bind(v: SqlParam, type: number | undefined, i: number): unknown {
    if (v === null) return null;
    switch (type) {
      case OID.bool:
        return typeof v === "number" || typeof v === "bigint" ? v !== 0 && v !== 0n : v;
      case OID.jsonb:
      case OID.json:
        return typeof v === "string" ? this.pool.json(parseJsonParam(v, i)) : v;
      case OID.text:
      case OID.varchar:
      case OID.bpchar:
        return typeof v === "number" || typeof v === "bigint" ? String(v) : v;
      case OID.int2:
      case OID.int4:
      case OID.int8:
      case OID.numeric:
      case OID.float4:
      case OID.float8:
        return typeof v === "boolean" ? Number(v) : v;
      default:
        return v;
    }
  }
}

/** The client of a pool (build one per pool: its caches are per client). */
export function pgSql(pool: SQL): PgClient {
  return new PgClient(pool);
}

function parseJsonParam(text: string, i: number): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new TypeError(
      `parameter ${i + 1} is a JSON column: bind JSON text (JSON.stringify of the value), not ${JSON.stringify(text.slice(0, 40))}`,
    );
  }
}

type Column = { name: string; type: number };

/** Bigint/numeric columns to numbers and JSON columns to text, in place: what SQLite's rows hold. */
function fromPg(rows: RawRow[]): RawRow[] {
  const columns = (rows as unknown as { columns: Column[] | null }).columns;
  if (rows.length === 0 || !columns) return rows;
  const numbers: string[] = [];
  const json: string[] = [];
  for (const c of columns) {
    if (c.type === OID.int8 || c.type === OID.numeric) numbers.push(c.name);
    else if (c.type === OID.jsonb || c.type === OID.json) json.push(c.name);
  }
  if (numbers.length === 0 && json.length === 0) return rows;
  for (const row of rows) {
    for (const name of numbers) {
      const v = row[name];
      if (v != null) row[name] = Number(v);
    }
    // Bun parses jsonb; a JSON null comes back as null and reads as null through the mapper either way.
    for (const name of json) {
      const v = row[name];
      if (v != null) row[name] = JSON.stringify(v);
    }
  }
  return rows;
}

/**
 * `?` to `$1, $2, …` in order, leaving alone what is quoted or commented: '…' (with '' and, in E'…', \'),
 * "…", $tag$…$tag$, -- … and /* … *\/. A `?` is always a placeholder: portable SQL has no jsonb `?` operator.
 */
export function toDollarParams(text: string): string {
  if (!text.includes("?")) return text;
  let out = "";
  let n = 0;
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (ch === "?") {
      out += `$${++n}`;
      i++;
      continue;
    }
    let end = i + 1;
    if (ch === "'")
      end = quotedEnd(text, i, "'", /[eE]/.test(text[i - 1] ?? "") && !/\w/.test(text[i - 2] ?? ""));
    else if (ch === '"') end = quotedEnd(text, i, '"', false);
    else if (ch === "-" && text[i + 1] === "-") end = lineEnd(text, i);
    else if (ch === "/" && text[i + 1] === "*") end = blockCommentEnd(text, i);
    else if (ch === "$") end = dollarQuoteEnd(text, i);
    out += text.slice(i, end);
    i = end;
  }
  return out;
}

function quotedEnd(text: string, start: number, quote: string, backslashes: boolean): number {
  let i = start + 1;
  while (i < text.length) {
    const ch = text[i];
    if (backslashes && ch === "\\") i += 2;
    else if (ch === quote && text[i + 1] === quote) i += 2;
    else if (ch === quote) return i + 1;
    else i++;
  }
  return text.length;
}

function lineEnd(text: string, start: number): number {
  const nl = text.indexOf("\n", start);
  return nl === -1 ? text.length : nl + 1;
}

function blockCommentEnd(text: string, start: number): number {
  let depth = 0;
  let i = start;
  while (i < text.length) {
    if (text.startsWith("/*", i)) {
      depth++;
      i += 2;
    } else if (text.startsWith("*/", i)) {
      depth--;
      i += 2;
      if (depth === 0) return i;
    } else i++;
  }
  return text.length;
}

/** The end of a $tag$…$tag$ string starting at `start`, or just past the `$` when it is not one ($1). */
function dollarQuoteEnd(text: string, start: number): number {
  const tag = /^\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(start))?.[0];
  if (!tag) return start + 1;
  const close = text.indexOf(tag, start + tag.length);
  return close === -1 ? text.length : close + tag.length;
}

/** The error a statement failed with, or null once it succeeded: for statements sent without awaiting. */
function settled(query: PromiseLike<unknown>): Promise<unknown> {
  return Promise.resolve(query).then(
    () => null,
    (err: unknown) => err,
  );
}

/** The server's SQLSTATE of an error, or "". */
function sqlState(err: unknown): string {
  const errno = (err as { errno?: unknown } | null)?.errno;
  return typeof errno === "string" ? errno : "";
}

/** SQLSTATEs of a server that cannot serve now, whatever the statement (see isPgUnavailable). */
const UNAVAILABLE_STATES = /^(08|53)|^(57P01|57P02|57P03|25006|58030)$/;
/** The driver's and the socket's codes for a connection refused, lost or timed out. */
const UNAVAILABLE_CODES = /^(ERR_POSTGRES_CONNECTION|ECONNREFUSED$|ECONNRESET$|ETIMEDOUT$|EPIPE$)/;

/**
 * Whether `err` says PostgreSQL cannot be reached or cannot serve right now, not that the statement was
 * wrong: a refused, timed-out or lost connection, a shutdown, restart or crash recovery (57P01-57P03), a
 * database closed to connections, a read-only standby after a failover (25006), exhausted resources such
 * as a full disk or too many connections (class 53), an I/O error (58030). The same request may succeed once
 * the server is back: the API answers it with 503 and Retry-After, as SQLite's write faults.
 */
export function isPgUnavailable(err: unknown): boolean {
  for (const e of causeChain(err)) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && UNAVAILABLE_CODES.test(code)) return true;
    const state = sqlState(e);
    if (UNAVAILABLE_STATES.test(state)) return true;
    if (state === "55000" && /not currently accepting connections/.test((e as Error).message ?? ""))
      return true;
  }
  return false;
}

/** A unique violation as the error both clients throw; any other error as it is. */
function translate(err: unknown): unknown {
  if (sqlState(err) !== "23505" || err instanceof UniqueViolation) return err;
  const e = err as { message: string; table?: string; detail?: string };
  // "Key (owner_id, key)=(…) already exists."
  const key = /^Key \((.*?)\)=/.exec(e.detail ?? "")?.[1];
  return new UniqueViolation(e.message, {
    table: e.table ?? null,
    columns: key ? key.split(", ") : [],
    cause: err,
  });
}
