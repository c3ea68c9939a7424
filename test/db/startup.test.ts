import { Database } from "bun:sqlite";
import { afterEach, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { embeddedMigrations } from "../../src/db/migrate";
import { expectExit, runEasel, tempDir } from "../helpers";

// bunfig's [test] timeout is not read by this Bun: the per-file default is set here, generously (a loaded
// machine makes these slower, never red).
setDefaultTimeout(60_000);

const dirs: (() => void)[] = [];
function dataDir(): string {
  const tmp = tempDir("easel-startup-");
  dirs.push(tmp.cleanup);
  return tmp.dir;
}
afterEach(() => {
  for (const cleanup of dirs.splice(0)) cleanup();
});

/** One line on stderr, naming `file`, and nothing else (no stack trace). */
function expectOneLine(stderr: string, file: string): string {
  const lines = stderr.trimEnd().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain(file);
  expect(stderr).not.toContain("    at ");
  return lines[0]!;
}

async function migrated(): Promise<{ dir: string; db: string }> {
  const dir = dataDir();
  expectExit(await runEasel(dir, ["migrate"]), 0);
  return { dir, db: join(dir, "easel.db") };
}

test("a corrupt database: exit 2 with one line naming the file and the way out", async () => {
  const dir = dataDir();
  const db = join(dir, "easel.db");
  writeFileSync(db, `this is not a database${"\0".repeat(4096)}`);
  for (const command of [["serve"], ["migrate"], ["queue", "status"]]) {
    const run = await runEasel(dir, command);
    expectExit(run, 2, `${command.join(" ")}: `);
    expect(expectOneLine(run.stderr, db)).toContain("easel restore");
  }
});

test("an unreadable DATA_DIR (a file where the directory should be): exit 2, one line", async () => {
  const dir = dataDir();
  const notADir = join(dir, "data");
  writeFileSync(notADir, "");
  for (const command of [["serve"], ["migrate"]]) {
    const run = await runEasel(notADir, command);
    expectExit(run, 2, `${command.join(" ")}: `);
    expect(expectOneLine(run.stderr, join(notADir, "easel.db"))).toContain("DATA_DIR");
  }
});

test("a database migrated by a newer version is refused and left untouched", async () => {
  const { dir, db } = await migrated();
  const latest = embeddedMigrations().at(-1)!.when;
  const sqlite = new Database(db);
  sqlite.run("INSERT INTO __drizzle_migrations (hash, created_at) VALUES ('from-the-future', ?)", [
    latest + 1000,
  ]);
  // As a newer version might leave it: not in WAL mode, which opening would switch to.
  sqlite.exec("PRAGMA journal_mode = DELETE");
  sqlite.close();
  const before = readFileSync(db);
  const run = await runEasel(dir, ["serve"]);
  expectExit(run, 2);
  expect(expectOneLine(run.stderr, db)).toContain("newer version");
  expect(readFileSync(db).equals(before)).toBe(true);
  const check = new Database(db, { readonly: true });
  expect(check.query("PRAGMA journal_mode").get()).toEqual({ journal_mode: "delete" });
  check.close();
});

test("a migration edited after the database applied it is refused, naming the migration", async () => {
  const { dir, db } = await migrated();
  const first = embeddedMigrations()[0]!;
  const sqlite = new Database(db);
  sqlite.run("UPDATE __drizzle_migrations SET hash = 'edited' WHERE created_at = ?", [first.when]);
  sqlite.close();
  const run = await runEasel(dir, ["migrate"]);
  expectExit(run, 2);
  const line = expectOneLine(run.stderr, db);
  expect(line).toContain(first.tag);
  expect(line).toContain("changed");
});

test("an up-to-date database still opens (migrate twice is a no-op)", async () => {
  const { dir } = await migrated();
  expectExit(await runEasel(dir, ["migrate"]), 0);
  expectExit(await runEasel(dir, ["queue", "status", "--json"]), 0);
});
