/**
 * Another process holding the SQLite file's write lock past busy_timeout (a tool with the file open in a
 * long transaction): a request that must write is answered 503 database_busy with Retry-After, never 500,
 * and the same request succeeds once the lock is released. The holder here is a second connection of this
 * process, which is all SQLite sees of another process.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../helpers";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

test("a write refused because another process holds the lock gets 503 database_busy, then succeeds", async () => {
  const holder = new Database(server.ctx.config.databasePath);
  holder.exec("BEGIN IMMEDIATE");
  let released = false;
  try {
    const res = await server.api("/api/users", {
      method: "POST",
      json: { name: "while locked", role: "user" },
    });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("database_busy");
    holder.exec("COMMIT");
    released = true;
    const again = await server.api("/api/users", { method: "POST", json: { name: "after", role: "user" } });
    expect(again.status).toBe(201);
    // Nothing of the refused request was written.
    const names = holder.query("SELECT name FROM users WHERE name IN ('while locked', 'after')").values();
    expect(names).toEqual([["after"]]);
  } finally {
    if (!released) holder.exec("ROLLBACK");
    holder.close();
  }
}, 60_000);
