/**
 * Runs WAL checkpoints on its own connection in a worker thread, so their fsyncs never block the event
 * loop or a commit. PASSIVE never waits for writers; the WAL is rewound by SQLite once fully checkpointed.
 * Started without a timer, it is the upkeep worker: it runs what would otherwise stall the event loop
 * (incremental vacuum steps, `PRAGMA optimize`), each while the main connection stands aside (Checkpointer).
 */
import { Database } from "bun:sqlite";

declare const self: Worker;

/** The main connection's `synchronous` (0-3) and `cache_size`, which the upkeep's commits follow. */
type Start = { path: string; intervalMs: number; synchronous: number; cacheSize: number };
/** Upkeep asked for by the main thread; answered, in order, with a `Done`. */
export type Upkeep = { vacuum: number } | { optimize: true };
export type Done = { ms: number } | { failed: string };

let db: Database | null = null;
let timer: ReturnType<typeof setInterval> | null = null;

function checkpoint(mode: "PASSIVE" | "TRUNCATE"): void {
  try {
    db?.query(`PRAGMA wal_checkpoint(${mode})`).get();
  } catch (err) {
    // SQLITE_BUSY: a checkpoint or writer holds the lock; the next tick tries again.
    if (!String(err).includes("busy") && !String(err).includes("locked")) throw err;
  }
}

function upkeep(job: Upkeep): Done {
  if (!db) return { failed: "not started" };
  const started = performance.now();
  try {
    if ("vacuum" in job) db.run(`PRAGMA incremental_vacuum(${Math.max(1, Math.floor(job.vacuum))})`);
    else {
      db.exec("PRAGMA analysis_limit = 400");
      // 0x10002: every table, not only those this connection has queried (it queries none).
      db.exec("PRAGMA optimize(0x10002)");
    }
  } catch (err) {
    return { failed: String(err) };
  }
  return { ms: performance.now() - started };
}

self.onmessage = (event: MessageEvent<Start | Upkeep | "stop" | "now">) => {
  const data = event.data;
  if (data === "now") {
    checkpoint("PASSIVE");
    postMessage("checkpointed");
    return;
  }
  if (data === "stop") {
    // The checkpoint worker leaves the WAL empty; the upkeep worker (no timer) leaves it to that one.
    if (timer) {
      clearInterval(timer);
      checkpoint("TRUNCATE");
    }
    db?.close();
    postMessage("stopped");
    return;
  }
  if ("vacuum" in data || "optimize" in data) {
    postMessage(upkeep(data));
    return;
  }
  const { path, intervalMs, synchronous, cacheSize } = data;
  db = new Database(path);
  db.exec("PRAGMA busy_timeout = 1000");
  // Its commits (vacuum steps) as the main connection's: no automatic checkpoint inside a commit (the
  // timer runs them), and no fsync unless FULL is asked for.
  db.exec("PRAGMA wal_autocheckpoint = 0");
  db.exec(`PRAGMA synchronous = ${Math.trunc(synchronous)}`);
  db.exec(`PRAGMA cache_size = ${Math.trunc(cacheSize)}`);
  // 0: the upkeep worker, which only answers what it is asked.
  if (intervalMs > 0) timer = setInterval(() => checkpoint("PASSIVE"), intervalMs);
  postMessage("started");
};
