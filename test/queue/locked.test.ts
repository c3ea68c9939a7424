/**
 * The worker pool while another process holds the SQLite file's write lock: its claims are refused, it keeps
 * polling, says so once (not once per poll), and takes the job as soon as the lock is released.
 */
import { Database } from "bun:sqlite";
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import pino from "pino";
import { z } from "zod";
import { BUSY_TIMEOUT_MS } from "../../src/db/sqlite";
import { defineJob } from "../../src/queue";
import { dbOf, tempDir, testQueue, waitFor } from "../helpers";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

test("claims refused by a held lock are logged once, and the job runs once it is released", async () => {
  const tmp = tempDir();
  cleanups.push(tmp.cleanup);
  const path = join(tmp.dir, "q.db");
  const lines: { level: number; msg: string; failedTries?: number }[] = [];
  const log = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  const q = testQueue(path, { log });
  cleanups.push(() => q.stop(1000));
  // As the server's connection (openSqlite): the busy handler waits briefly, the client the rest.
  dbOf(q).exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
  q.define(defineJob({ type: "t", input: z.object({}), run: async () => ({ ok: true }) }));
  const { id } = await q.enqueue("t", {});

  const holder = new Database(path);
  holder.exec("BEGIN IMMEDIATE");
  q.start();
  const refused = () => lines.filter((l) => l.msg === "could not claim jobs; trying again");
  await waitFor(() => refused().length > 0, { what: "a refused claim" });
  // Some polls while the lock is held (every 20 ms here).
  await Bun.sleep(300);
  holder.exec("COMMIT");
  holder.close();

  await waitFor(async () => (await q.get(id))?.status === "completed", { what: "the job to run" });
  expect(refused()).toHaveLength(1);
  const again = lines.find((l) => l.msg === "claiming jobs again");
  expect(again?.failedTries).toBeGreaterThanOrEqual(2);
}, 30_000);
