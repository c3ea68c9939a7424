/**
 * Whether the database can take writes. A full disk (SQLITE_FULL), an I/O error or a read-only file shows
 * up on whichever write hits it first — a job's asset row, a settlement, a request — not on a lock probe;
 * those writes report it here, readiness turns red, and the next readiness probe that can commit a real
 * page allocation turns it green again.
 */
import type { Database } from "bun:sqlite";
import { causeChain } from "./sql";

const FAULT_CODES = /^SQLITE_(FULL|IOERR|READONLY|CANTOPEN)/;

/** True for errors that mean the disk under the database refuses writes (not a constraint or a lock). */
export function isWriteFault(err: unknown): boolean {
  for (const e of causeChain(err)) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && FAULT_CODES.test(code)) return true;
    if (e instanceof Error && /database or disk is full|disk I\/O error/.test(e.message)) return true;
  }
  return false;
}

/**
 * True for SQLite's "database is locked": another process (a CLI command, a tool with the file open) held
 * the write lock for longer than busy_timeout. Nothing was written; the same request may succeed shortly.
 */
export function isLockedByAnother(err: unknown): boolean {
  for (const e of causeChain(err)) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^SQLITE_BUSY/.test(code)) return true;
  }
  return false;
}

export class WriteHealth {
  #fault: { message: string; since: number } | null = null;

  /** The current write fault, or null when the last write went through. */
  get fault(): { message: string; since: number } | null {
    return this.#fault;
  }

  failed(err: unknown): void {
    this.#fault ??= { message: (err as Error)?.message ?? String(err), since: Date.now() };
  }

  succeeded(): void {
    this.#fault = null;
  }

  /**
   * Commits a write that allocates pages (a scratch table with a few pages of data, dropped in the same
   * transaction, so the file keeps its size once the freelist holds them): it fails exactly when a real
   * insert would, whether the limit is the disk or `max_page_count`. Only run while a fault is recorded.
   */
  probe(sqlite: Database): void {
    try {
      sqlite.exec("BEGIN IMMEDIATE");
      try {
        sqlite.exec("CREATE TABLE _easel_write_probe (x BLOB)");
        sqlite.exec("INSERT INTO _easel_write_probe VALUES (zeroblob(16384))");
        sqlite.exec("DROP TABLE _easel_write_probe");
        sqlite.exec("COMMIT");
      } catch (err) {
        if (sqlite.inTransaction) sqlite.exec("ROLLBACK");
        throw err;
      }
      this.succeeded();
    } catch (err) {
      if (!isWriteFault(err)) throw err;
      this.failed(err);
      throw new Error(`database writes are failing: ${(err as Error).message}`);
    }
  }
}

const byConnection = new WeakMap<Database, WriteHealth>();

/** The write health of one connection (the server has one; its queue, routes and readiness share it). */
export function writeHealth(sqlite: Database): WriteHealth {
  let health = byConnection.get(sqlite);
  if (!health) {
    health = new WriteHealth();
    byConnection.set(sqlite, health);
  }
  return health;
}
