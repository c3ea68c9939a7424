/**
 * What Easel refuses, through the real CLI, when DATABASE_URL puts it in cluster mode: local storage that
 * other instances cannot see, a signing secret each instance would make up for itself, SQLite backups of data
 * that is not in SQLite. Each refusal comes before anything is opened, so none needs the server to be
 * reachable; past them, an unreachable server is one line naming it.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { clusterRefusal, loadConfig } from "../../src/config";
import { expectExit, runEasel, tempDir } from "../helpers";

const DATABASE_URL = "postgres://easel:hunter2-secret@127.0.0.1:1/easel";
const JWT_SECRET = "a-cluster-wide-secret-of-at-least-32-chars";
const dirs: (() => void)[] = [];
afterEach(() => {
  for (const c of dirs.splice(0)) c();
});
function dataDir(): string {
  const t = tempDir("easel-refusals-");
  dirs.push(t.cleanup);
  return t.dir;
}

describe("cluster mode refusals (DATABASE_URL)", () => {
  test("serve refuses STORAGE=local in one line saying why and what to set, and touches nothing", async () => {
    const dir = dataDir();
    const run = await runEasel(dir, ["serve"], { DATABASE_URL, STORAGE: "local" });
    expectExit(run, 2);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toContain("STORAGE=local with DATABASE_URL");
    expect(run.stderr).toContain("STORAGE=s3");
    expect(run.stderr).toContain("STORAGE_SHARED=true");
    expect(run.stderr).not.toContain("hunter2");
    expect(readdirSync(dir)).toEqual([]);
  });

  test("serve refuses to start without JWT_SECRET: each instance would sign with its own", async () => {
    const dir = dataDir();
    const run = await runEasel(dir, ["serve"], { DATABASE_URL, STORAGE_SHARED: "true" });
    expectExit(run, 2);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toContain("JWT_SECRET is unset with DATABASE_URL");
    expect(run.stderr).toContain("same value on every instance");
    expect(readdirSync(dir)).toEqual([]);
  });

  test("with shared local storage or S3 and JWT_SECRET the checks pass: an unreachable server is one line", async () => {
    for (const env of <Record<string, string>[]>[
      { STORAGE_SHARED: "true" },
      { STORAGE: "s3", S3_BUCKET: "easel", S3_ENDPOINT: "http://127.0.0.1:1" },
    ]) {
      const dir = dataDir();
      const run = await runEasel(dir, ["serve"], { DATABASE_URL, JWT_SECRET, ...env });
      expectExit(run, 2);
      expect(run.stderr.trim().split("\n")).toHaveLength(1);
      expect(run.stderr).toContain("cannot be reached");
      expect(run.stderr).not.toContain("hunter2");
      expect(run.stderr).not.toContain("STORAGE=local");
      expect(readdirSync(dir)).toEqual([]);
    }
  });

  test("BACKUP_CRON is logged once as ignored, and no snapshot is scheduled", async () => {
    const run = await runEasel(dataDir(), ["serve"], {
      DATABASE_URL,
      STORAGE_SHARED: "true",
      JWT_SECRET,
      BACKUP_CRON: "* * * * *",
      LOG_LEVEL: "info",
    });
    expectExit(run, 2);
    const lines = run.stdout
      .trim()
      .split("\n")
      .filter((l) => l.includes("BACKUP_CRON"));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 40, msg: expect.stringContaining("pg_dump") });
  });

  test("easel backup and restore point at PostgreSQL's own tools and exit 1, writing nothing", async () => {
    const dir = dataDir();
    const backup = await runEasel(dir, ["backup", join(dir, "copy.db")], { DATABASE_URL });
    expectExit(backup, 1);
    expect(backup.stderr).toContain("pg_dump");
    expect(backup.stderr).toContain("managed snapshots");
    expect(existsSync(join(dir, "copy.db"))).toBe(false);
    const restore = await runEasel(dir, ["restore", join(dir, "copy.db")], { DATABASE_URL });
    expectExit(restore, 1);
    expect(restore.stderr).toContain("pg_restore");
    expect(readdirSync(dir)).toEqual([]);
  });

  test("without DATABASE_URL local storage is the zero-config default, never refused", () => {
    expect(clusterRefusal(loadConfig({}))).toBeNull();
    expect(clusterRefusal(loadConfig({ DATABASE_URL, STORAGE_SHARED: "yes", JWT_SECRET }))).toBeNull();
    expect(clusterRefusal(loadConfig({ DATABASE_URL }))).toContain("STORAGE_SHARED=true");
  });
});
