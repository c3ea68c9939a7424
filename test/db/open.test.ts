/** `openDatabase`: the `Sql` the configuration names, migrated, on SQLite or PostgreSQL. */
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { DatabaseOpenError } from "../../src/db/client";
import { openDatabase } from "../../src/db/open";
import { tempDir, testConfig } from "../helpers";
import { pgDatabasePerTest } from "./pg-helpers";

const { database, cleanups } = pgDatabasePerTest();

describe("openDatabase", () => {
  test("without DATABASE_URL: the SQLite file in DATA_DIR, migrated", async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const opened = await openDatabase(testConfig(tmp.dir));
    try {
      expect(opened.backend).toBe("sqlite");
      expect(opened.where).toBe(join(tmp.dir, "easel.db"));
      expect(existsSync(join(tmp.dir, "easel.db"))).toBe(true);
      expect(await opened.sql.get("SELECT count(*) AS n FROM users")).toEqual({ n: 0 });
    } finally {
      await opened.close();
    }
  });

  test("with DATABASE_URL: a PostgreSQL pool, migrated, and no SQLite file", async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const db = await database();
    const opened = await openDatabase(testConfig(tmp.dir, { DATABASE_URL: db.url }));
    try {
      expect(opened.backend).toBe("postgres");
      expect(opened.where).toContain(":***@");
      expect(await opened.sql.get("SELECT count(*) AS n FROM users")).toEqual({ n: 0 });
      await opened.sql.run(
        "INSERT INTO instances (id, host, version, started_at, last_heartbeat_at) VALUES (?, ?, ?, ?, ?)",
        ["i-1", "h", "v", 1, 1],
      );
      expect(existsSync(join(tmp.dir, "easel.db"))).toBe(false);
    } finally {
      await opened.close();
    }
  });

  test("an unreachable PostgreSQL is one DatabaseOpenError naming it without the password", async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const err = await openDatabase(
      testConfig(tmp.dir, { DATABASE_URL: "postgres://easel:s3cret@127.0.0.1:1/easel" }),
    ).catch((e) => e);
    expect(err).toBeInstanceOf(DatabaseOpenError);
    expect(err.message).toContain("127.0.0.1:1");
    expect(err.message).not.toContain("s3cret");
  });
});
