/**
 * The one interface repositories talk to: a few async calls that a second backend (PostgreSQL) implements
 * as well as SQLite does. Repositories write portable SQL against it:
 *
 * - `?` placeholders, bound in order;
 * - `INSERT … ON CONFLICT … DO NOTHING / DO UPDATE`, `… RETURNING` (never `INSERT OR …`);
 * - no SQLite-only functions (`json_extract`, `json_each`, `IFNULL`, …): JSON columns are read whole and
 *   decoded by the row mappers compiled from the drizzle tables (`rowMapper` in rows.ts);
 * - booleans bound as 0/1 and times as epoch milliseconds, as the schema declares them.
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
   * The write lock is held until `fn` settles, so `fn` must never await real I/O (storage, HTTP, rendering,
   * a sleep): do that before or after, and keep only database work inside.
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
