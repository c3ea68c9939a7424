import type { Database } from "bun:sqlite";

/**
 * Runs `fn` as one transaction: inside the caller's when one is open on this connection, else an IMMEDIATE one
 * of its own (the write lock is taken up front, so a read-then-write never fails with SQLITE_BUSY_SNAPSHOT).
 * Everything an operation writes — a charge, its job, its idempotency answer — goes through one of these.
 */
export function transaction<T>(db: Database, fn: () => T): T {
  if (db.inTransaction) return fn();
  return db.transaction(fn).immediate();
}
