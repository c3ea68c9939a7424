/**
 * Where a retention slice's time goes: builds the history benchmark's data (`--rows` finished jobs, see
 * lib/history-data.ts) and runs the store's own retention slices on it in process (`--limit` jobs each,
 * the size a 5 ms slice reaches, with the assets taken in the slice as the server does), one thread, no
 * server. Reports the process CPU per deleted job (user + system: the machine's load inflates wall time
 * far more than CPU time), split by statement, then the same on a copy without `jobs_owner_idx`: the one
 * index whose entries a time-ordered delete finds one to a page (1,000 owners interleave in time), so it
 * shows what the per-owner job list costs retention.
 *
 *   bun run bench retention [--json] [--rows 200000] [--limit 170] [--slices 400]
 */
import { Database } from "bun:sqlite";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { openDb } from "../../src/db/client";
import { QueueStore } from "../../src/queue/store";
import { buildHistory } from "./lib/history-data";
import { machine, report, round } from "./machine";

const { values } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    rows: { type: "string", default: "200000" },
    limit: { type: "string", default: "170" },
    slices: { type: "string", default: "400" },
  },
});
const rows = Number(values.rows);
const limit = Number(values.limit);
const slices = Number(values.slices);

/** CPU microseconds spent in each statement (by its SQL's first words), recorded while `on`. */
const bySql = new Map<string, number>();
let on = false;
const proto = Database.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
for (const method of ["prepare", "query"] as const) {
  const original = proto[method]!;
  proto[method] = function (this: Database, sql: unknown, ...rest: unknown[]) {
    const stmt = original.call(this, sql, ...rest) as Record<string, (...a: unknown[]) => unknown>;
    const label = String(sql).replace(/\s+/g, " ").trim().slice(0, 48);
    for (const run of ["all", "get", "run", "values"]) {
      const call = stmt[run]!;
      stmt[run] = (...args: unknown[]) => {
        if (!on) return call.apply(stmt, args);
        const c = process.cpuUsage();
        const out = call.apply(stmt, args);
        const d = process.cpuUsage(c);
        bySql.set(label, (bySql.get(label) ?? 0) + d.user + d.system);
        return out;
      };
    }
    return stmt;
  };
}

/** Runs `slices` retention slices of completed jobs on `path`; CPU per deleted job, total and by statement. */
function measure(path: string, now: number) {
  const db = openDb(path).$client;
  // Checkpoints run below, outside the measured slices (the server runs them in a worker thread).
  db.exec("PRAGMA wal_autocheckpoint = 0");
  const store = new QueueStore(db);
  const takeAssets = db.prepare(
    "DELETE FROM assets WHERE job_id IN (SELECT value FROM json_each(?)) RETURNING storage_key, thumbnail_key",
  );
  bySql.clear();
  let cpu = 0;
  let deleted = 0;
  let cursor: Parameters<QueueStore["deleteFinishedSlice"]>[2] = null;
  for (let i = 0; i < slices; i++) {
    if (i % 50 === 0) db.run("PRAGMA wal_checkpoint(PASSIVE)");
    on = true;
    const c = process.cpuUsage();
    // As Queue#cleanupRetention runs a slice: foreign keys off around its transaction, the asset rows
    // taken, then the jobs and their children deleted.
    db.exec("PRAGMA foreign_keys = OFF");
    const from = cursor;
    const slice = store.tx(() => {
      const found = store.deleteFinishedSlice("completed", now - 3_600_000, from, limit);
      if (found.ids.length > 0) {
        takeAssets.all(JSON.stringify(found.ids));
        found.delete();
      }
      return found;
    });
    db.exec("PRAGMA foreign_keys = ON");
    const d = process.cpuUsage(c);
    on = false;
    cpu += d.user + d.system;
    deleted += slice.ids.length;
    cursor = slice.next;
    if (!cursor) break;
  }
  db.close();
  const split = Object.fromEntries(
    [...bySql].sort((a, b) => b[1] - a[1]).map(([sql, us]) => [sql, round(us / deleted)]),
  );
  return { deleted, cpu_us_per_job: round(cpu / deleted), by_statement: split };
}

const dir = mkdtempSync(join(tmpdir(), "easel-bench-retention-"));
try {
  const now = Date.now();
  const full = join(dir, "full.db");
  buildHistory(full, rows, now);
  const lean = join(dir, "lean.db");
  copyFileSync(full, lean);
  const drop = new Database(lean);
  drop.exec("DROP INDEX jobs_owner_idx");
  drop.close();
  const withAll = measure(full, now);
  const withoutOwnerIndex = measure(lean, now);
  report(
    {
      rows,
      slice_limit: limit,
      deleted: withAll.deleted,
      cpu_us_per_job: withAll.cpu_us_per_job,
      cpu_us_per_job_without_owner_index: withoutOwnerIndex.cpu_us_per_job,
      by_statement: withAll.by_statement,
      machine: machine(),
    },
    values.json,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
