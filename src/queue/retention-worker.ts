/**
 * Retention's slices on a worker thread's own connection (see retention-thread.ts): the same
 * `QueueStore#deleteFinishedSlice` the event loop would run, so the event loop stays free while a slice's
 * rows, index entries, children and counts are deleted. Answers each message, in order, with a `SliceDone`.
 */
import { Database } from "bun:sqlite";
import type { TerminalStatus } from "../db/schema";
import { QueueStore, type RetentionCursor } from "./store";

/** The worker's global scope: `close()` ends the thread from inside. */
declare const self: Worker & { close(): void };

/**
 * The main connection's `synchronous` (0-3) and `cache_size`, which this connection's commits follow, and
 * `wanted`: one Int32 the main thread sets to 1 while something waits for its connection.
 */
export type RetentionStart = {
  path: string;
  synchronous: number;
  cacheSize: number;
  wanted: SharedArrayBuffer;
};
/**
 * One slice: one transaction deleting chunks of about `chunkMs` each (up to `limit` rows a chunk), walking
 * `status` from `from`, until the status is done, `capMs` have passed, or the main thread wants its
 * connection back (then after the chunk under way).
 */
export type SliceAsk = {
  status: TerminalStatus;
  before: number;
  from: RetentionCursor | null;
  chunkMs: number;
  capMs: number;
  /** Run before the delete with the slice's ids as a JSON array (?1); every string column it returns is a key. */
  companionSql?: string;
};
export type SliceDone =
  | { ids: string[]; next: RetentionCursor | null; keys: string[]; ms: number }
  | { failed: string };

let store: QueueStore | null = null;
let wanted: Int32Array | null = null;
const companions = new Map<string, ReturnType<Database["prepare"]>>();
/** Rows per chunk, per status and type: a generation (items, assets) costs more than a card render. */
const chunkRows = new Map<string, number>();

function slice(ask: SliceAsk): SliceDone {
  if (!store) return { failed: "not started" };
  const db = store.db;
  const started = performance.now();
  try {
    // One set of count upserts for the whole transaction, however many chunks it takes.
    const out = store.tx(() =>
      store!.countingDeletes((moved) => {
        const ids: string[] = [];
        const keys: string[] = [];
        let from = ask.from;
        for (;;) {
          const chunkStarted = performance.now();
          // The walk's first type comes from the scan when `from` is null; sized from the floor up.
          const sizeKey = `${ask.status}\u0000${from?.type ?? ""}`;
          const rows = chunkRows.get(sizeKey) ?? 50;
          const found = store!.deleteFinishedSlice(ask.status, ask.before, from, rows);
          if (found.ids.length > 0) {
            if (ask.companionSql) {
              let stmt = companions.get(ask.companionSql);
              if (!stmt) {
                stmt = db.prepare(ask.companionSql);
                companions.set(ask.companionSql, stmt);
              }
              for (const row of stmt.all(JSON.stringify(found.ids)) as Record<string, unknown>[]) {
                for (const v of Object.values(row)) if (typeof v === "string") keys.push(v);
              }
            }
            found.delete(moved);
            for (const id of found.ids) ids.push(id);
          }
          const ms = performance.now() - chunkStarted;
          // Grow gently, shrink at once (as SliceSizer does on the main thread).
          const scaled = rows * (ask.chunkMs / Math.max(ms, 0.1));
          chunkRows.set(sizeKey, Math.round(Math.min(5000, Math.max(50, Math.min(scaled, rows * 1.5)))));
          from = found.next;
          if (!from) break;
          if (wanted && Atomics.load(wanted, 0) === 1) break;
          if (performance.now() - started + ms > ask.capMs) break;
        }
        return { ids, next: from, keys };
      }),
    );
    return { ...out, ms: performance.now() - started };
  } catch (err) {
    return { failed: String(err) };
  }
}

self.onmessage = (event: MessageEvent<RetentionStart | SliceAsk | "stop">) => {
  const data = event.data;
  if (data === "stop") {
    store?.db.close();
    store = null;
    postMessage("stopped");
    // Ends the thread from inside: the main thread's `terminate()` blocked its event loop ~70 ms after a
    // large run (the thread's heap torn down synchronously; docs/BENCHMARKS.md, history round 5).
    self.close();
    return;
  }
  if ("status" in data) {
    postMessage(slice(data));
    return;
  }
  try {
    const db = new Database(data.path);
    // The main connection stands aside while a slice runs, so only another process can hold the lock.
    db.exec("PRAGMA busy_timeout = 5000");
    // Commits as the main connection's: no automatic checkpoint inside a commit (the checkpoint worker
    // runs them), and no fsync unless FULL is asked for.
    db.exec("PRAGMA wal_autocheckpoint = 0");
    db.exec(`PRAGMA synchronous = ${Math.trunc(data.synchronous)}`);
    db.exec(`PRAGMA cache_size = ${Math.trunc(data.cacheSize)}`);
    db.exec("PRAGMA temp_store = MEMORY");
    // This connection only runs retention slices, which delete the jobs' children themselves
    // (deleteFinishedSlice): the per-row foreign-key actions would find nothing left to do.
    db.exec("PRAGMA foreign_keys = OFF");
    store = new QueueStore(db);
    wanted = new Int32Array(data.wanted);
    postMessage("started");
  } catch (err) {
    postMessage({ failed: String(err) });
  }
};
