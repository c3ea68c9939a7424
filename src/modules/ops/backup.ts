/**
 * Database backups. `VACUUM INTO` writes a compact copy of the database as of the moment it starts (it runs
 * in one read transaction; WAL lets the server keep committing meanwhile), so a backup taken under load holds
 * every commit acknowledged before it began. Restore replaces the database file while no server runs.
 *
 * Only the SQLite file is covered: with local storage, images live under DATA_DIR/files (copy that directory
 * too); with S3 they are in the bucket already.
 */

import { Database } from "bun:sqlite";
import { copyFileSync, existsSync, renameSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { Cron } from "croner";
import type { Config } from "../../config";
import { openDb } from "../../db/client";
import type { Logger } from "../../log";
import { LocalStorage, listAll, type Storage } from "../../storage";
import type { Metrics } from "../metrics/service";
import type { SnapshotReply, SnapshotRequest } from "./snapshot-worker";

/** What this file needs from the services, and nothing more. */
type Deps = { config: Config; log: Logger; metrics: Metrics; storage: Storage };

export type BackupErrorCode =
  | "backup_exists"
  | "database_missing"
  | "integrity_failed"
  | "not_an_easel_database"
  | "server_running";

export class BackupError extends Error {
  override name = "BackupError";
  readonly code: BackupErrorCode;
  constructor(code: BackupErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** Storage prefix of scheduled snapshots. */
export const BACKUP_PREFIX = "backups/";
const SNAPSHOT_NAME = /^backups\/easel-\d{8}T\d{6}Z-[0-9a-f]{8}\.db$/;

const tempName = (path: string, tag: string) =>
  join(dirname(path), `.${basename(path)}.${tag}-${crypto.randomUUID().slice(0, 8)}`);

/** Opens an existing database for reading without creating or migrating it. */
function openExisting(path: string, readonly = false): Database {
  if (!existsSync(path)) throw new BackupError("database_missing", `no database at ${path}`);
  const db = new Database(path, readonly ? { readonly: true } : { create: false });
  db.exec("PRAGMA busy_timeout = 5000");
  return db;
}

/** `PRAGMA integrity_check` of the file: an empty list when it is sound, SQLite's findings otherwise. */
export function integrityProblems(path: string): string[] {
  let db: Database;
  try {
    db = openExisting(path, true);
  } catch (err) {
    if (err instanceof BackupError) throw err;
    return [(err as Error).message];
  }
  try {
    const rows = db.query("PRAGMA integrity_check").values() as [string][];
    return rows.map((r) => r[0]).filter((line) => line !== "ok");
  } catch (err) {
    return [(err as Error).message];
  } finally {
    db.close();
  }
}

function assertEaselDatabase(path: string): void {
  const db = openExisting(path, true);
  try {
    const tables = new Set(
      (db.query("SELECT name FROM sqlite_master WHERE type = 'table'").values() as [string][]).map(
        (r) => r[0],
      ),
    );
    for (const table of ["__drizzle_migrations", "jobs", "users"]) {
      if (!tables.has(table)) throw new BackupError("not_an_easel_database", `${path} has no ${table} table`);
    }
  } finally {
    db.close();
  }
}

/**
 * Writes a consistent copy of the database at `source` (an open connection) to `target`, which must not
 * exist. The copy is written beside the target, checked with integrity_check, then renamed into place, so
 * `target` only ever appears complete.
 */
export function backupDatabase(source: Database, target: string): { bytes: number } {
  if (existsSync(target)) throw new BackupError("backup_exists", `${target} already exists`);
  const partial = tempName(target, "partial");
  try {
    source.run("VACUUM INTO ?", [partial]);
    const problems = integrityProblems(partial);
    if (problems.length) {
      throw new BackupError("integrity_failed", `the copy failed integrity_check: ${problems.join("; ")}`);
    }
    renameSync(partial, target);
    return { bytes: Bun.file(target).size };
  } finally {
    rmSync(partial, { force: true });
  }
}

/** `easel backup`: a consistent copy of the database file at `databasePath`, safe while a server runs. */
export function backupFile(databasePath: string, target: string): { bytes: number } {
  const db = openExisting(databasePath);
  try {
    return backupDatabase(db, target);
  } finally {
    db.close();
  }
}

/**
 * `easel restore`: replaces the database with `backup` after checking it (integrity_check, Easel's tables).
 * The current database is kept beside it as `<name>.before-restore-<time>`. The caller makes sure no server
 * is running (see lock.ts). Pending migrations are applied, so an older backup works with newer code.
 */
export function restoreFile(backup: string, databasePath: string): { previous: string | null } {
  const problems = integrityProblems(backup);
  if (problems.length) {
    throw new BackupError("integrity_failed", `${backup} failed integrity_check: ${problems.join("; ")}`);
  }
  assertEaselDatabase(backup);
  let previous: string | null = null;
  if (existsSync(databasePath)) {
    // Fold the WAL into the main file first, so the kept copy is complete on its own.
    const db = openExisting(databasePath);
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    db.close();
    previous = `${databasePath}.before-restore-${stamp(new Date())}`;
    renameSync(databasePath, previous);
  }
  for (const suffix of ["-wal", "-shm"]) rmSync(`${databasePath}${suffix}`, { force: true });
  const incoming = tempName(databasePath, "restoring");
  copyFileSync(backup, incoming);
  renameSync(incoming, databasePath);
  openDb(databasePath).$client.close();
  return { previous };
}

/** `20250102T030405Z`: sortable, and valid in storage keys and file names. */
export function stamp(at: Date): string {
  return at
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}Z$/, "Z");
}

/**
 * Where scheduled snapshots go: the S3 bucket when STORAGE=s3; with local storage, DATA_DIR/backups — not
 * under DATA_DIR/files, which /files serves to anyone.
 */
export function backupStorage(
  config: { STORAGE: string; dataDir: string; publicUrl: string },
  storage: Storage,
) {
  return config.STORAGE === "s3"
    ? storage
    : new LocalStorage({ root: config.dataDir, publicBaseUrl: config.publicUrl });
}

export type SnapshotResult = { key: string; bytes: number; pruned: string[] };

/**
 * One scheduled snapshot: a consistent copy (made by `copy`, off the event loop in the server) uploaded as
 * `backups/easel-<time>-<random>.db`, then all but the newest `keep` snapshots deleted. The random part keeps
 * snapshot URLs unguessable should the bucket be public.
 */
export async function snapshotToStorage(opts: {
  copy: (target: string) => Promise<void>;
  storage: Storage;
  tmpDir: string;
  keep: number;
  now?: Date;
}): Promise<SnapshotResult> {
  const tmp = join(opts.tmpDir, `.snapshot-${crypto.randomUUID()}.db`);
  try {
    await opts.copy(tmp);
    const bytes = await Bun.file(tmp).bytes();
    const key = `${BACKUP_PREFIX}easel-${stamp(opts.now ?? new Date())}-${crypto.randomUUID().slice(0, 8)}.db`;
    await opts.storage.put(key, bytes, { contentType: "application/vnd.sqlite3" });
    const pruned = await pruneSnapshots(opts.storage, opts.keep);
    return { key, bytes: bytes.byteLength, pruned };
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** Deletes all but the newest `keep` snapshots; returns the deleted keys. */
export async function pruneSnapshots(storage: Storage, keep: number): Promise<string[]> {
  const keys = (await listAll(storage, BACKUP_PREFIX))
    .map((o) => o.key)
    .filter((k) => SNAPSHOT_NAME.test(k))
    .sort();
  const old = keys.slice(0, Math.max(0, keys.length - keep));
  if (old.length) await storage.deleteMany(old);
  return old;
}

/** A `copy` for snapshotToStorage that runs VACUUM INTO in a worker thread (./snapshot-worker.ts). */
export function copyInWorker(databasePath: string): (target: string) => Promise<void> {
  return (target) =>
    new Promise<void>((resolve, reject) => {
      const worker = new Worker(new URL("./snapshot-worker.ts", import.meta.url));
      const done = (err?: Error) => {
        worker.terminate();
        if (err) reject(err);
        else resolve();
      };
      worker.onmessage = (e: MessageEvent<SnapshotReply>) =>
        done(e.data.ok ? undefined : new Error(`snapshot failed: ${e.data.message}`));
      worker.onerror = (e) => done(new Error(`snapshot worker failed: ${e.message}`));
      worker.postMessage({ databasePath, target } satisfies SnapshotRequest);
    });
}

/**
 * The BACKUP_CRON schedule: each run uploads a snapshot and prunes to BACKUP_KEEP, records the outcome in
 * the metrics and logs it. Runs never overlap.
 */
export function scheduleSnapshots(ctx: Deps, pattern: string): Cron {
  const { config, log, metrics } = ctx;
  const storage = backupStorage(config, ctx.storage);
  return new Cron(pattern, { protect: true }, async () => {
    try {
      const result = await snapshotToStorage({
        copy: copyInWorker(config.databasePath),
        storage,
        tmpDir: config.dataDir,
        keep: config.BACKUP_KEEP,
      });
      metrics.backupSnapshot(true);
      log.info(
        // Not `key`/`bytes`: the logger redacts fields of those names (API keys, image bytes).
        { snapshot: result.key, size: result.bytes, pruned: result.pruned.length },
        "database snapshot stored",
      );
    } catch (err) {
      metrics.backupSnapshot(false);
      log.error({ err }, "database snapshot failed");
    }
  });
}
