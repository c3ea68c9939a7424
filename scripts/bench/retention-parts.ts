/**
 * Where a retention-deleted job's CPU goes, component by component: builds the history benchmark's data
 * (lib/history-data.ts; or takes `--db`, a file it built), then for each variant copies the file, takes one
 * component out (an index, the count trigger, the grouped count upserts, the child tables' deletes) and runs
 * `--jobs` completed jobs of `--type` through retention's own slice statements (as
 * QueueStore#deleteFinishedSlice runs them, foreign keys off, asset rows taken), `--limit` jobs a slice.
 * Reports CPU µs per deleted job (process user + system; the machine's load inflates wall time far more),
 * split by statement, the PASSIVE checkpoint's CPU (the server runs it on another thread) and WAL frames per job.
 *
 *   bun scripts/bench/retention-parts.ts [--rows 1000000] [--db built.db --now <ms it was built at>]
 *     [--limit 170] [--jobs 60000] [--type generate] [--variants base,noowner,...]
 *
 * Variants (join with +): noowner (no jobs_owner_idx), notrigger (no jobs_counts_ended_delete), nocounts (no
 * grouped job_counts upserts: with the trigger left, it counts per row instead), nochildren (no items,
 * attempts, input keys, asset links), noassets (asset rows not taken), nopartial (no partial indexes over
 * live rows, nor jobs_recipe_idx), noassetidx, noattidx (their job_id indexes), fkon (foreign keys left on).
 */
import { Database } from "bun:sqlite";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { openDb } from "../../src/db/client";
import { type CountMove, countDeltas, ownersOf } from "../../src/queue/store";
import { buildHistory } from "./lib/history-data";
import { machine } from "./machine";

const { values } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000" },
    db: { type: "string" },
    now: { type: "string" },
    limit: { type: "string", default: "170" },
    jobs: { type: "string", default: "60000" },
    type: { type: "string", default: "generate" },
    variants: {
      type: "string",
      default: "base,noowner,notrigger,notrigger+nocounts,nochildren,noassets,nopartial,fkon",
    },
  },
});
const dir = mkdtempSync(join(tmpdir(), "easel-bench-parts-"));
let src = values.db;
let now = Number(values.now ?? Date.now());
if (!src) {
  src = join(dir, "full.db");
  now = Date.now();
  buildHistory(src, Number(values.rows), now);
}
const before = now - 3_600_000;
const limit = Number(values.limit);
const total = Number(values.jobs);
const typeArg = values.type!;
process.stdout.write(`${JSON.stringify({ machine: machine() })}\n`);
try {
  for (const variant of values.variants!.split(",")) measure(variant);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

function measure(variant: string): void {
  const path = join(dir, "variant.db");
  copyFileSync(src!, path);
  {
    const d = new Database(path);
    const ddl: Record<string, string[]> = {
      noowner: ["DROP INDEX jobs_owner_idx"],
      noended: [], // the scan needs it; measured by statement
      nopartial: [
        "DROP INDEX jobs_claim_idx",
        "DROP INDEX jobs_owner_queued_idx",
        "DROP INDEX jobs_dedupe_queued_idx",
        "DROP INDEX jobs_active_lease_idx",
        "DROP INDEX jobs_recipe_idx",
      ],
      notrigger: ["DROP TRIGGER jobs_counts_ended_delete"],
      noassetidx: ["DROP INDEX assets_job_idx", "DROP INDEX assets_thumbnail_key_idx"],
      noattidx: ["DROP INDEX job_attempts_job_idx", "DROP INDEX job_input_keys_key_idx"],
    };
    for (const v of variant.split("+")) for (const s of ddl[v] ?? []) d.exec(s);
    d.close();
  }
  const has = (v: string) => variant.split("+").includes(v);
  const db = openDb(path, { migrate: false }).$client;
  db.exec("PRAGMA wal_autocheckpoint = 0");
  const cpu = new Map<string, number>();
  const t = (label: string, fn: () => unknown) => {
    const c = process.cpuUsage();
    const out = fn();
    const d = process.cpuUsage(c);
    cpu.set(label, (cpu.get(label) ?? 0) + d.user + d.system);
    return out;
  };
  const scan = db.prepare(`SELECT rowid AS r, id, finished_at, type, owner_id,
  metadata IS NOT NULL AND coalesce(json_extract(metadata, '$.keep'), 0) AS keep
  FROM jobs INDEXED BY jobs_ended_idx
  WHERE status = ?1 AND type = ?2 AND finished_at IS NOT NULL AND finished_at < ?3 AND (finished_at, id) > (?4, ?5)
  ORDER BY finished_at, id LIMIT ?6`);
  const takeAssets = db.prepare(
    "DELETE FROM assets WHERE job_id IN (SELECT value FROM json_each(?)) RETURNING storage_key, thumbnail_key",
  );
  const children = {
    items: db.prepare("DELETE FROM job_items WHERE job_id IN (SELECT value FROM json_each(?))"),
    attempts: db.prepare("DELETE FROM job_attempts WHERE job_id IN (SELECT value FROM json_each(?))"),
    inputKeys: db.prepare("DELETE FROM job_input_keys WHERE job_id IN (SELECT value FROM json_each(?))"),
    assetsNull: db.prepare(
      "UPDATE assets SET job_id = NULL WHERE job_id IN (SELECT value FROM json_each(?))",
    ),
  };
  const delJobs = db.prepare("DELETE FROM jobs WHERE rowid IN (SELECT value FROM json_each(?))");
  const defer = db.prepare("INSERT INTO job_counts_deferred (id) VALUES (1)");
  const undefer = db.prepare("DELETE FROM job_counts_deferred");
  const parents = db.prepare(
    "SELECT id, parent_id FROM users WHERE id IN (SELECT value FROM json_each(?)) AND parent_id IS NOT NULL",
  );
  const addCount = db.prepare(`INSERT INTO job_counts (scope, type, status, n) VALUES (?, ?, ?, ?)
  ON CONFLICT (scope, type, status) DO UPDATE SET n = n + excluded.n`);
  const begin = db.prepare("BEGIN IMMEDIATE");
  const commit = db.prepare("COMMIT");
  let at = { finishedAt: -1, id: "" };
  let deleted = 0;
  let sinceCk = 0;
  let wal = 0;
  const c0 = process.cpuUsage();
  const w0 = performance.now();
  let ckCpu = 0;
  while (deleted < total) {
    if (!has("fkon")) db.exec("PRAGMA foreign_keys = OFF");
    t("BEGIN", () => begin.run());
    const rows = t("scan", () => scan.all("completed", typeArg, before, at.finishedAt, at.id, limit)) as {
      r: number;
      id: string;
      finished_at: number;
      type: string;
      owner_id: string | null;
    }[];
    if (rows.length === 0) {
      commit.run();
      break;
    }
    const ids = JSON.stringify(rows.map((r) => r.id));
    if (!has("noassets")) t("assets take", () => takeAssets.all(ids));
    if (!has("nochildren")) {
      t("items", () => children.items.run(ids));
      t("attempts", () => children.attempts.run(ids));
      t("input keys", () => children.inputKeys.run(ids));
      t("assets job_id", () => children.assetsNull.run(ids));
    }
    if (!has("nocounts")) t("defer", () => defer.run());
    t("delete jobs", () => delJobs.run(JSON.stringify(rows.map((r) => r.r))));
    if (!has("nocounts")) {
      t("counts", () => {
        const moved: CountMove[] = rows.map((r) => ({
          type: r.type,
          ownerId: r.owner_id,
          from: "completed",
          to: null,
        }));
        const owners = ownersOf(moved);
        const p = new Map(
          (parents.all(JSON.stringify(owners)) as { id: string; parent_id: string }[]).map((u) => [
            u.id,
            u.parent_id,
          ]),
        );
        const { counts } = countDeltas(moved, p);
        for (const [key, n] of counts) {
          const [s, ty, st] = key.split("\u0000");
          if (n !== 0) addCount.run(s!, ty!, st!, n);
        }
      });
      t("defer", () => undefer.run());
    }
    t("COMMIT", () => commit.run());
    if (!has("fkon")) db.exec("PRAGMA foreign_keys = ON");
    const last = rows.at(-1)!;
    at = { finishedAt: last.finished_at, id: last.id };
    deleted += rows.length;
    sinceCk += rows.length;
    if (sinceCk >= 20000) {
      sinceCk = 0;
      const c = process.cpuUsage();
      const r = db.query("PRAGMA wal_checkpoint(PASSIVE)").get() as { log: number };
      wal += r.log;
      const dd = process.cpuUsage(c);
      ckCpu += dd.user + dd.system;
    }
  }
  const c = process.cpuUsage();
  const r = db.query("PRAGMA wal_checkpoint(PASSIVE)").get() as { log: number };
  wal += r.log;
  const dd = process.cpuUsage(c);
  ckCpu += dd.user + dd.system;
  const all = process.cpuUsage(c0);
  const wall = performance.now() - w0;
  db.close();
  for (const f of [path, `${path}-wal`, `${path}-shm`]) rmSync(f, { force: true });
  const per = (us: number) => Math.round((us / deleted) * 10) / 10;
  const slicesCpu = all.user + all.system - ckCpu;
  process.stdout.write(
    `${JSON.stringify({ variant, limit, type: typeArg, deleted, us_per_job: per(slicesCpu), checkpoint_us_per_job: per(ckCpu), wal_frames_per_job: Math.round((wal / deleted) * 100) / 100, wall_us_per_job: per(wall * 1000 - 0), by: Object.fromEntries([...cpu].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, per(v)])) })}\n`,
  );
}
