import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { openDb } from "../src/db/client";
import { backupFile, pruneSnapshots, snapshotToStorage } from "../src/modules/ops/backup";
import { S3Storage } from "../src/storage";
import { listAll } from "../src/storage/types";
import { runEasel, startTestServer, tempDir, waitFor } from "./helpers";
import { startS3rver } from "./storage/s3rver";

const ROOT = resolve(import.meta.dir, "..");

const easel = runEasel;

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
function dir(): string {
  const t = tempDir("easel-backup-");
  cleanups.push(t.cleanup);
  return t.dir;
}

const jobIds = (dbPath: string): Set<string> => {
  const db = new Database(dbPath, { readonly: true });
  try {
    return new Set((db.query("SELECT id FROM jobs").values() as [string][]).map((r) => r[0]));
  } finally {
    db.close();
  }
};

/** Starts the write-load child and collects the job ids it acknowledges (committed), in order. */
function startWriter(dbPath: string) {
  const proc = Bun.spawn(["bun", join(import.meta.dir, "fixtures", "backup-writer.ts")], {
    cwd: ROOT,
    env: { ...process.env, DB_PATH: dbPath },
    stdout: "pipe",
    stderr: "inherit",
  });
  const acked: string[] = [];
  const done = (async () => {
    let rest = "";
    for await (const chunk of proc.stdout.pipeThrough(new TextDecoderStream())) {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop() ?? "";
      acked.push(...lines.filter(Boolean));
    }
  })();
  return {
    acked,
    stop: async () => {
      proc.kill("SIGTERM");
      await Promise.all([proc.exited, done]);
      return proc.exitCode;
    },
  };
}

describe("easel backup / restore", () => {
  test("a backup taken under write load holds every job acknowledged before it started, and restores", async () => {
    const source = dir();
    const dbPath = join(source, "easel.db");
    openDb(dbPath).$client.close();
    const writer = startWriter(dbPath);
    cleanups.push(async () => void (await writer.stop()));
    await waitFor(() => writer.acked.length >= 300, { timeoutMs: 15_000, what: "300 acknowledged jobs" });

    const ackedBefore = [...writer.acked];
    const file = join(dir(), "snapshot.db");
    const backup = await easel(source, ["backup", file]);
    const ackedAfter = writer.acked.length;
    expect(await writer.stop()).toBe(0);
    expect(`${backup.code} ${backup.stderr}`).toBe("0 ");
    expect(backup.stdout).toContain(file);
    // The writer kept committing while the backup ran.
    expect(writer.acked.length).toBeGreaterThan(ackedBefore.length);

    const target = dir();
    const restored = await easel(target, ["restore", file]);
    expect(`${restored.code} ${restored.stderr}`).toBe("0 ");
    const ids = jobIds(join(target, "easel.db"));
    expect(ackedBefore.filter((id) => !ids.has(id))).toEqual([]);
    // Nothing appears that was never acknowledged (the copy is a snapshot, not a mix of states).
    const all = new Set(writer.acked);
    expect([...ids].filter((id) => !all.has(id))).toEqual([]);
    expect(ids.size).toBeLessThanOrEqual(ackedAfter + 1);

    // The restored database is a working Easel database: a server starts on it and sees the jobs.
    const server = await startTestServer({ dir: target });
    try {
      const stats = await server.ctx.queue.stats();
      expect(Object.keys(stats.byType)).toEqual(["load"]);
      expect(stats.completed + stats.waiting + stats.active).toBe(ids.size);
    } finally {
      await server.close();
    }
  }, 60_000);

  test("restore refuses while a server runs on the data dir, and keeps the previous database", async () => {
    const data = dir();
    const file = join(dir(), "b.db");
    const server = await startTestServer({ dir: data });
    const created = await server.api("/api/users", {
      method: "POST",
      json: { name: "kept-in-backup", role: "user" },
    });
    expect(created.status).toBe(201);
    expect((await easel(data, ["backup", file])).code).toBe(0);
    const refused = await easel(data, ["restore", file]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("server_running");
    expect(refused.stderr).toContain(String(server.port));
    await server.api("/api/users", { method: "POST", json: { name: "after-backup", role: "user" } });
    await server.close();
    expect(existsSync(join(data, "easel.pid"))).toBe(false);

    const restored = await easel(data, ["restore", file]);
    expect(`${restored.code} ${restored.stderr}`).toBe("0 ");
    const kept = readdirSync(data).find((f) => f.startsWith("easel.db.before-restore-"));
    expect(restored.stdout).toContain(kept!);
    const names = (path: string) => {
      const db = new Database(path, { readonly: true });
      const out = (db.query("SELECT name FROM users").values() as [string][]).map((r) => r[0]);
      db.close();
      return out;
    };
    expect(names(join(data, "easel.db"))).toContain("kept-in-backup");
    expect(names(join(data, "easel.db"))).not.toContain("after-backup");
    expect(names(join(data, kept!))).toContain("after-backup");
  }, 30_000);

  test("a pid file of a dead process does not block restore", async () => {
    const data = dir();
    const file = join(dir(), "b.db");
    openDb(join(data, "x.db")).$client.close();
    backupFile(join(data, "x.db"), file);
    const dead = Bun.spawn(["true"]);
    await dead.exited;
    writeFileSync(
      join(data, "easel.pid"),
      JSON.stringify({ pid: dead.pid, host: hostname(), port: 1, startedAt: 0 }),
    );
    expect((await easel(data, ["restore", file])).code).toBe(0);
  });

  test("restore refuses corrupt and foreign files; backup refuses to overwrite", async () => {
    const data = dir();
    const scratch = dir();
    openDb(join(data, "easel.db")).$client.close();
    const good = join(scratch, "good.db");
    expect((await easel(data, ["backup", good])).code).toBe(0);

    const again = await easel(data, ["backup", good]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("backup_exists");

    const corrupt = join(scratch, "corrupt.db");
    const bytes = readFileSync(good);
    bytes.fill(0x5a, 4096, 8192);
    writeFileSync(corrupt, bytes);
    const bad = await easel(data, ["restore", corrupt]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("integrity_failed");

    const foreign = join(scratch, "foreign.db");
    const other = new Database(foreign);
    other.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY)");
    other.close();
    const wrong = await easel(data, ["restore", foreign]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain("not_an_easel_database");
    // Refused restores leave the database alone.
    expect(readdirSync(data).filter((f) => f.includes("before-restore"))).toEqual([]);

    const usage = await easel(data, ["backup"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("usage: easel backup");
  }, 30_000);

  test("BACKUP_CRON uploads snapshots outside the public files and keeps BACKUP_KEEP of them", async () => {
    const server = await startTestServer({ env: { BACKUP_CRON: "* * * * * *", BACKUP_KEEP: "2" } });
    cleanups.push(() => server.close());
    const snapshots = () => {
      const d = join(server.dir, "backups");
      return existsSync(d) ? readdirSync(d).filter((f) => f.endsWith(".db")) : [];
    };
    const metric = async () => {
      const text = await (await server.api("/metrics")).text();
      return Number(/^easel_backup_snapshots_total\{result="ok"\} (\d+)/m.exec(text)?.[1] ?? 0);
    };
    await waitFor(async () => (await metric()) >= 3, { timeoutMs: 10_000, what: "three snapshots" });
    expect(snapshots().length).toBe(2);
    for (const name of snapshots()) {
      expect(name).toMatch(/^easel-\d{8}T\d{6}Z-[0-9a-f]{8}\.db$/);
      const db = new Database(join(server.dir, "backups", name), { readonly: true });
      expect(db.query("PRAGMA integrity_check").values()).toEqual([["ok"]]);
      expect(db.query("SELECT count(*) FROM users").values()[0]![0]).toBeGreaterThan(0);
      db.close();
    }
    expect(existsSync(join(server.dir, "files", "backups"))).toBe(false);
    const served = await server.api(`/files/backups/${snapshots()[0]}`, { key: null });
    expect(served.status).toBe(404);
  }, 20_000);

  test("with S3 storage, snapshots go to the bucket under backups/ and old ones are pruned", async () => {
    const s3 = await startS3rver(["bucket"]);
    cleanups.push(() => s3.stop());
    const storage = new S3Storage({ ...s3.credentials, endpoint: s3.endpoint, bucket: "bucket" });
    const data = dir();
    const dbPath = join(data, "easel.db");
    openDb(dbPath).$client.close();
    await storage.put("generations/keep.png", new Uint8Array([1]), { contentType: "image/png" });
    const keys: string[] = [];
    for (let i = 0; i < 3; i++) {
      const out = await snapshotToStorage({
        copy: async (target) => void backupFile(dbPath, target),
        storage,
        tmpDir: data,
        keep: 2,
        now: new Date(Date.UTC(2030, 0, 1, 0, 0, i)),
      });
      keys.push(out.key);
    }
    const listed = (await listAll(storage, "backups/")).map((o) => o.key).sort();
    expect(listed).toEqual(keys.slice(1).sort());
    const stored = await storage.get(keys[2]!);
    expect(new TextDecoder().decode(stored!.body.slice(0, 15))).toBe("SQLite format 3");
    expect(await storage.head("generations/keep.png")).not.toBeNull();
    expect(await pruneSnapshots(storage, 5)).toEqual([]);
    // The temp copies are gone.
    expect(readdirSync(data).filter((f) => f.startsWith(".snapshot-"))).toEqual([]);
  }, 30_000);
});
