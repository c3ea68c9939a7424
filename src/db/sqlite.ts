import type { Database, Statement } from "bun:sqlite";
import { AsyncLocalStorage } from "node:async_hooks";
import { type RawRow, runReporting, type Sql, type SqlParam, UniqueViolation } from "./sql";
import { isLockedByAnother } from "./write-health";

/**
 * One open transaction: what runs after it commits, and how many savepoints it has opened. `wanted`: an
 * `aside` holder's wish to hear that someone waits for the connection.
 */
type TxState = { afterCommit: (() => void)[]; savepoints: number; wanted?: () => void };

const clients = new WeakMap<Database, SqliteClient>();

/**
 * How long the connection's own busy handler waits for another process's write lock (`busy_timeout`, set by
 * openSqlite): it sleeps on the event loop, so only briefly, which covers the short transactions of a CLI
 * command. Past it the client waits asynchronously (LOCK_RETRY_MS between tries), for LOCK_WAIT_MS in all.
 */
export const BUSY_TIMEOUT_MS = 25;
const LOCK_RETRY_MS = 50;
/** The longest a statement or transaction waits for another process's write lock before it fails. */
export const LOCK_WAIT_MS = 5000;

/**
 * The one client of a connection: every user of the same `Database` must share its transaction gate, so
 * this returns the same client for the same connection.
 */
export function sqliteClient(db: Database): SqliteClient {
  let client = clients.get(db);
  if (!client) {
    client = new SqliteClient(db);
    clients.set(db, client);
  }
  return client;
}

/**
 * `Sql` on one bun:sqlite connection. Statements run synchronously (cached by their text) and return
 * settled promises; only waiting for another caller's transaction takes a turn of the event loop.
 *
 * A transaction is async, and one connection has only one: while it is suspended at an `await`, another
 * request's code runs, and its statements would otherwise join the open transaction (seeing its uncommitted
 * writes, or being rolled back with it). So:
 * - the transaction a piece of code belongs to is carried by an AsyncLocalStorage, through every `await`;
 * - transactions take their turn behind one gate, then `BEGIN IMMEDIATE`;
 * - a statement or `exclusive` section issued outside the open transaction waits until it ends (one
 *   comparison when none is open);
 * - a transaction's store stops counting as inside once it ends: a timer or listener scheduled inside it
 *   inherits the store, and then runs outside like anything else.
 */
export class SqliteClient implements Sql {
  readonly db: Database;
  readonly #als = new AsyncLocalStorage<TxState>();
  readonly #statements = new Map<string, Statement>();
  /** The async transaction holding the connection, or null. */
  #open: TxState | null = null;
  /** Settles when `#open` ends. */
  #ended: Promise<void> = Promise.resolve();
  /** The tail of the line of transactions waiting for their turn. */
  #gate: Promise<void> = Promise.resolve();
  /** Callers waiting for their turn at the gate or for the open transaction to end. */
  #waiting = 0;

  constructor(db: Database) {
    this.db = db;
  }

  /** Whether an async transaction holds the connection now (whoever asks). */
  get busy(): boolean {
    return this.#open !== null;
  }

  /** Whether the caller runs inside the open transaction. */
  get inside(): boolean {
    const store = this.#als.getStore();
    return store !== undefined && store === this.#open;
  }

  /** Resolves once no async transaction holds the connection. */
  async idle(): Promise<void> {
    while (this.#open !== null) await this.#ended;
  }

  all<T = RawRow>(text: string, params: readonly SqlParam[] = []): Promise<T[]> {
    return this.exclusive(() => this.#statement(text).all(...(params as SqlParam[])) as T[]);
  }

  get<T = RawRow>(text: string, params: readonly SqlParam[] = []): Promise<T | null> {
    return this.exclusive(() => (this.#statement(text).get(...(params as SqlParam[])) as T | null) ?? null);
  }

  run(text: string, params: readonly SqlParam[] = []): Promise<{ changes: number }> {
    return this.exclusive(() => ({ changes: this.#statement(text).run(...(params as SqlParam[])).changes }));
  }

  /**
   * Runs synchronous work on the raw connection (the queue's batched statements) at a moment it cannot join
   * another caller's transaction: now, when the caller is inside the open transaction or none is open; else
   * once it has ended. `fn` must not await.
   */
  exclusive<T>(fn: () => T): Promise<T> {
    if (this.#open === null || this.inside) return this.#run(fn);
    return this.#othersDone().then(() => this.#run(fn));
  }

  /**
   * Runs `fn` now. Refused by another process's write lock with no transaction open on this connection,
   * nothing of it took effect (a section's writes are one transaction or one statement; a write lock refused
   * is a write not made), so it runs again after a pause, off the event loop and behind the gate, until the
   * lock is free or LOCK_WAIT_MS have passed since the first refusal (`deadline`).
   */
  #run<T>(fn: () => T, deadline?: number): Promise<T> {
    try {
      return Promise.resolve(fn());
    } catch (err) {
      deadline ??= performance.now() + LOCK_WAIT_MS;
      if (isLockedByAnother(err) && !this.db.inTransaction && !this.inside && performance.now() < deadline) {
        return Bun.sleep(LOCK_RETRY_MS)
          .then(() => this.#othersDone())
          .then(() => this.#run(fn, deadline));
      }
      return Promise.reject(uniqueViolation(err) ?? err);
    }
  }

  /** Resolves once no other caller's transaction (or `aside` holder) has the connection. */
  async #othersDone(): Promise<void> {
    if (this.#open === null || this.inside) return;
    this.#waiting++;
    try {
      // Checked again after each wake-up: the next transaction in line may have begun meanwhile.
      while (this.#open !== null && !this.inside) {
        this.#open.wanted?.();
        await this.#ended;
      }
    } finally {
      this.#waiting--;
    }
  }

  /** Runs `fn` outside any transaction's store: work it starts (a worker's job) never counts as inside one. */
  outside<T>(fn: () => T): T {
    return this.#als.exit(fn);
  }

  /**
   * `foreignKeys: false` (SQLite only) runs the transaction with foreign-key enforcement off, for a caller
   * that does what the keys would itself (retention deletes children by id set). The pragma cannot change
   * inside a transaction, so it is switched while this transaction holds the gate, before BEGIN and after
   * its end; a nested call joins the open transaction with the keys as they are.
   */
  async transaction<T>(fn: () => Promise<T>, opts: { foreignKeys?: false } = {}): Promise<T> {
    if (this.inside) return fn();
    const { promise: turn, resolve: passOn } = Promise.withResolvers<void>();
    const before = this.#gate;
    this.#gate = turn;
    await this.#turn(before);
    // Synchronous work (the queue's own short transactions) never spans an await, so none is open here.
    const state: TxState = { afterCommit: [], savepoints: 0 };
    const { promise: ended, resolve: end } = Promise.withResolvers<void>();
    this.#open = state;
    this.#ended = ended;
    let committed = false;
    const keysOff =
      opts.foreignKeys === false &&
      (this.#statement("PRAGMA foreign_keys").get() as { foreign_keys: number }).foreign_keys === 1;
    try {
      if (keysOff) this.#statement("PRAGMA foreign_keys = OFF").run();
      await this.#begin();
      const out = await this.#als.run(state, fn);
      this.#statement("COMMIT").run();
      committed = true;
      return out;
    } catch (err) {
      if (this.db.inTransaction) this.#statement("ROLLBACK").run();
      throw err;
    } finally {
      if (keysOff) this.#statement("PRAGMA foreign_keys = ON").run();
      // From here the store no longer counts as inside (see `inside`): whatever it scheduled runs outside.
      this.#open = null;
      end();
      passOn();
      if (committed) for (const fn of state.afterCommit) runReporting(fn);
    }
  }

  /**
   * Runs `fn`, which writes through another connection to the same file (a worker thread's), while this one
   * stands aside: it takes its turn at the gate like a transaction, so this connection's statements,
   * `exclusive` sections and transactions wait for `fn` to settle, asynchronously. Without it they would
   * meet the other connection's write lock in SQLite's busy handler, which sleeps on the event loop.
   * `fn` must not use this connection. `wanted` is called when something on this connection waits for `fn`
   * (at once if something already waits, and again as more arrive), so a long `fn` can end early.
   */
  async aside<T>(fn: () => Promise<T>, opts: { wanted?: () => void } = {}): Promise<T> {
    // Its turn at the gate would come after the transaction the caller is in, which waits for the caller.
    if (this.inside) throw new Error("aside() inside a transaction would wait for itself");
    const { promise: turn, resolve: passOn } = Promise.withResolvers<void>();
    const before = this.#gate;
    this.#gate = turn;
    await this.#turn(before);
    const { promise: ended, resolve: end } = Promise.withResolvers<void>();
    // A state nobody runs inside: everything issued on this connection meanwhile counts as outside it.
    this.#open = { afterCommit: [], savepoints: 0, wanted: opts.wanted };
    this.#ended = ended;
    // Transactions queued behind this turn wait for it too.
    if (this.#waiting > 0) opts.wanted?.();
    try {
      return await this.#als.exit(fn);
    } finally {
      this.#open = null;
      end();
      passOn();
    }
  }

  /**
   * BEGIN IMMEDIATE, waiting for another process's write lock asynchronously (see BUSY_TIMEOUT_MS): the
   * transaction holds the gate meanwhile, so this connection's other callers wait as they would anyway.
   */
  async #begin(): Promise<void> {
    const deadline = performance.now() + LOCK_WAIT_MS;
    for (;;) {
      try {
        this.#statement("BEGIN IMMEDIATE").run();
        return;
      } catch (err) {
        if (!isLockedByAnother(err) || performance.now() >= deadline) throw err;
      }
      await Bun.sleep(LOCK_RETRY_MS);
    }
  }

  /** Waits for `before` (the previous turn at the gate), telling an `aside` holder that someone waits. */
  async #turn(before: Promise<void>): Promise<void> {
    this.#waiting++;
    try {
      this.#open?.wanted?.();
      await before;
    } finally {
      this.#waiting--;
    }
  }

  async savepoint<T>(fn: () => Promise<T>): Promise<T> {
    const state = this.#als.getStore();
    if (!state || state !== this.#open) return this.transaction(fn);
    const name = `easel_sp_${++state.savepoints}`;
    this.#statement(`SAVEPOINT ${name}`).run();
    try {
      const out = await fn();
      this.#statement(`RELEASE ${name}`).run();
      return out;
    } catch (err) {
      this.#statement(`ROLLBACK TO ${name}`).run();
      this.#statement(`RELEASE ${name}`).run();
      throw err;
    }
  }

  afterCommit(fn: () => void): void {
    const state = this.#als.getStore();
    if (state && state === this.#open) state.afterCommit.push(fn);
    else fn();
  }

  #statement(text: string): Statement {
    let stmt = this.#statements.get(text);
    if (!stmt) {
      stmt = this.db.prepare(text);
      this.#statements.set(text, stmt);
    }
    return stmt;
  }
}

/** SQLite's "UNIQUE constraint failed: t.a, t.b" as the error both clients throw; null for any other error. */
function uniqueViolation(err: unknown): UniqueViolation | null {
  const code = (err as { code?: unknown } | null)?.code;
  if (code !== "SQLITE_CONSTRAINT_UNIQUE" && code !== "SQLITE_CONSTRAINT_PRIMARYKEY") return null;
  const message = (err as Error).message;
  const keys = /constraint failed: (.*)$/.exec(message)?.[1]?.split(", ") ?? [];
  const parts = keys.map((k) => k.split("."));
  return new UniqueViolation(message, {
    table: parts[0]?.length === 2 ? parts[0][0]! : null,
    columns: parts.map((p) => p.at(-1)!),
    cause: err,
  });
}
