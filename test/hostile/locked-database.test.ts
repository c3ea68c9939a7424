/**
 * Another process holding the SQLite file's write lock (a tool with the file open in a transaction). The
 * holder here is a second connection of this process, which is all SQLite sees of another process. The
 * server waits for the lock off its event loop: requests that need no write are answered meanwhile; a write
 * waits and goes through once the lock is released; one that waits past LOCK_WAIT_MS is answered 503
 * database_busy with Retry-After, never 500, with nothing of it written.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { LOCK_WAIT_MS } from "../../src/db/sqlite";
import { startTestServer, type TestServer } from "../helpers";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

function holdWriteLock(): { release: () => void } {
  const holder = new Database(server.ctx.config.databasePath);
  holder.exec("BEGIN IMMEDIATE");
  return {
    release: () => {
      if (holder.inTransaction) holder.exec("COMMIT");
      holder.close();
    },
  };
}

const createUser = (name: string) =>
  server.api("/api/users", { method: "POST", json: { name, role: "user" } });
const usersNamed = (name: string) =>
  (
    server.ctx.db.$client.query("SELECT count(*) AS n FROM users WHERE name = ?").get(name) as {
      n: number;
    }
  ).n;

test("a write waits for the lock off the event loop, and goes through once it is released", async () => {
  const lock = holdWriteLock();
  let settled = false;
  const pending = createUser("waited").then((res) => {
    settled = true;
    return res;
  });
  try {
    // The event loop is free while the write waits: liveness answers, more than once.
    for (let i = 0; i < 3; i++) {
      const live = await server.api("/api/health/live", { key: null });
      expect(live.status).toBe(200);
    }
    expect(settled).toBe(false);
  } finally {
    lock.release();
  }
  expect((await pending).status).toBe(201);
  expect(usersNamed("waited")).toBe(1);
}, 60_000);

test("a write that waits past LOCK_WAIT_MS gets 503 database_busy with Retry-After, and nothing of it is written", async () => {
  const lock = holdWriteLock();
  const started = performance.now();
  try {
    const res = await createUser("refused");
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("database_busy");
    expect(performance.now() - started).toBeGreaterThanOrEqual(LOCK_WAIT_MS - 100);
  } finally {
    lock.release();
  }
  expect(usersNamed("refused")).toBe(0);
  expect((await createUser("after")).status).toBe(201);
}, 60_000);
