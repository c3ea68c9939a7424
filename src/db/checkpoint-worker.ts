/**
 * Runs WAL checkpoints on its own connection in a worker thread, so their fsyncs never block the event
 * loop or a commit. PASSIVE never waits for writers; the WAL is rewound by SQLite once fully checkpointed.
 */
import { Database } from "bun:sqlite";

declare const self: Worker;

type Start = { path: string; intervalMs: number };

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

self.onmessage = (event: MessageEvent<Start | "stop" | "now">) => {
  if (event.data === "now") {
    checkpoint("PASSIVE");
    postMessage("checkpointed");
    return;
  }
  if (event.data === "stop") {
    if (timer) clearInterval(timer);
    checkpoint("TRUNCATE");
    db?.close();
    postMessage("stopped");
    return;
  }
  const { path, intervalMs } = event.data;
  db = new Database(path);
  db.exec("PRAGMA busy_timeout = 1000");
  timer = setInterval(() => checkpoint("PASSIVE"), intervalMs);
  postMessage("started");
};
