/**
 * The one interface repositories talk to: a few async calls that a second backend (PostgreSQL) implements
 * as well as SQLite does. Repositories write portable SQL against it:
 *
 * - `?` placeholders, bound in order;
 * - `INSERT … ON CONFLICT … DO NOTHING / DO UPDATE`, `… RETURNING` (never `INSERT OR …`);
 * - no SQLite-only functions (`json_extract`, `json_each`, `IFNULL`, …): JSON columns are read whole and
 *   decoded by the row mappers compiled from the drizzle tables (`rowMapper` in rows.ts);
 * - booleans bound as 0/1 and times as epoch milliseconds, as the schema declares them.
 *
 * Both clients (sqlite.ts, pg/sql.ts) are held to one contract suite (test/db/transaction.test.ts). Where the
 * databases differ, a repository follows these rules, and is then correct on both:
 *
 * - `?` is always a placeholder, even where PostgreSQL has a `?` operator (jsonb): outside quotes, comments
 *   and quoted names every `?` is a parameter.
 * - Booleans: compare with a bound 0/1 (`unlimited = ?`), or use the column alone (`WHERE active`,
 *   `NOT active`) or `= TRUE`; never `= 1` in the text (PostgreSQL has no boolean = integer). A raw row
 *   holds 0/1 on SQLite and true/false on PostgreSQL: read booleans through `rowMapper` or by truthiness.
 * - Integers (counts, sums, epoch ms) come back as numbers on both, exact up to 2^53; JSON columns come back
 *   as JSON text on both (bind JSON text, decode with `rowMapper`).
 * - Concurrency: SQLite runs one transaction at a time, and a statement outside it waits until it ends.
 *   PostgreSQL runs them side by side (READ COMMITTED, row locks), and a statement outside a transaction
 *   runs at once, seeing only committed rows. So a value read in a transaction may be stale by the time the
 *   transaction writes: make the read and the write one statement (`SET v = v + ?`, a conditional
 *   `UPDATE … WHERE credits >= ?`, an upsert), or lock the row as you read it with
 *   `UPDATE t SET k = k WHERE … RETURNING …` (PostgreSQL's `SELECT … FOR UPDATE` has no SQLite spelling).
 * - On PostgreSQL a failed statement aborts its transaction: inside a transaction, catch a statement's error
 *   (a `UniqueViolation`) only around a `savepoint`; better, avoid it with `ON CONFLICT`.
 * - On PostgreSQL `transaction` may run `fn` again when it loses a conflict (a deadlock, a serialization
 *   failure; pg/sql.ts states the bound), so `fn` must be safe to run twice: database work only, and
 *   effects through `afterCommit`.
 */

/** A value a statement binds. */
export type SqlParam = string | number | bigint | boolean | null | Uint8Array;

/** A raw row as the driver returns it: snake_case columns, JSON as text (map it with `rowMapper`). */
export type RawRow = Record<string, unknown>;

export interface Sql {
  /** Every row the statement returns. */
  all<T = RawRow>(text: string, params?: readonly SqlParam[]): Promise<T[]>;
  /** The first row the statement returns, or null. */
  get<T = RawRow>(text: string, params?: readonly SqlParam[]): Promise<T | null>;
  /** Runs a statement that returns no rows; `changes` is how many rows it inserted, updated or deleted. */
  run(text: string, params?: readonly SqlParam[]): Promise<{ changes: number }>;
  /**
   * Runs `fn` as one transaction: every statement `fn` issues (directly or through any repository, however
   * deep) commits together or not at all. A call inside a running transaction joins it.
   *
   * Its locks (SQLite: the write lock; PostgreSQL: a connection and the rows it wrote) are held until `fn`
   * settles, so `fn` must never await real I/O (storage, HTTP, rendering, a sleep): do that before or after,
   * and keep only database work inside.
   */
  transaction<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Runs `fn` in a savepoint of the current transaction (a transaction of its own when none is open): when
   * `fn` throws, only its own writes are rolled back, and the error is rethrown.
   */
  savepoint<T>(fn: () => Promise<T>): Promise<T>;
  /** Runs `fn` once the current transaction has committed (never when it rolls back); at once outside one. */
  afterCommit(fn: () => void): void;
}

/** `err` and the errors it wraps (`cause`), outermost first, at most `depth` of them. */
export function* causeChain(err: unknown, depth = 5): Generator<unknown> {
  for (let e = err, n = 0; e && n < depth; e = (e as { cause?: unknown }).cause, n++) yield e;
}

/**
 * A statement broke a primary key or unique index. Both clients throw this one class (the driver's error is
 * its `cause`), so a repository that turns a duplicate into an answer (409, "already exists") catches it the
 * same way on either database. Inside a transaction, catch it only around a `savepoint` (see the rules above).
 */
export class UniqueViolation extends Error {
  override readonly name = "UniqueViolation";
  /** The table, when the driver names it. */
  readonly table: string | null;
  /** The key's columns, when the driver names them (an expression index may give none). */
  readonly columns: string[];

  constructor(message: string, details: { table: string | null; columns: string[]; cause: unknown }) {
    super(message, { cause: details.cause });
    this.table = details.table;
    this.columns = details.columns;
  }
}

/**
 * Runs an after-commit callback for either client: one that throws must not make a committed transaction look
 * failed, so its error is reported apart (an uncaught error on the next microtask).
 */
export function runReporting(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    queueMicrotask(() => {
      throw err;
    });
  }
}

/** `?, ?, …`: one placeholder per value, for `IN (…)` lists and `VALUES (…)` rows. */
export function placeholders(n: number): string {
  return Array.from({ length: n }, () => "?").join(", ");
}

/**
 * `values` lengthened to the next power of two by repeating its last value, for an `IN (…)` list (where a
 * repeated value changes nothing): statements of a few lengths instead of one per length, so a server that
 * prepares and plans each new statement text (PostgreSQL, per connection) does so a few times, not for every
 * batch size.
 */
export function padded<T>(values: readonly T[]): T[] {
  if (values.length === 0) return [];
  let n = 1;
  while (n < values.length) n *= 2;
  return [...values, ...Array<T>(n - values.length).fill(values[values.length - 1]!)];
}

/**
 * `rows` cut into runs whose lengths are powers of two, longest first (25 rows: 16, 8 and 1), for multi-row
 * statements that cannot be padded (`INSERT … VALUES`): like `padded`, a few statement texts instead of one
 * per batch size.
 */
export function inPowersOfTwo<T>(rows: readonly T[]): T[][] {
  const runs: T[][] = [];
  let at = 0;
  for (let size = 2 ** Math.floor(Math.log2(Math.max(rows.length, 1))); at < rows.length; size /= 2) {
    if (rows.length - at >= size) {
      runs.push(rows.slice(at, at + size));
      at += size;
    }
  }
  return runs;
}

/**
 * The results of statements issued together (pipelined: a connection runs them in order), once every one has
 * settled; else the first failure in that order. Waiting for all before throwing matters inside a
 * transaction: its rollback must not overtake statements still on the wire.
 */
export async function allStatements<const T extends readonly unknown[]>(
  statements: T,
): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const settled = await Promise.allSettled(statements);
  for (const r of settled) if (r.status === "rejected") throw r.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as {
    -readonly [K in keyof T]: Awaited<T[K]>;
  };
}
