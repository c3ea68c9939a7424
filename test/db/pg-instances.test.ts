/**
 * The instances registry on both databases (the table is in both schemas): two registries on one database
 * stand for two instances; the clock is passed in, so a lapsed heartbeat needs no waiting.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { SQL } from "bun";
import { openDb } from "../../src/db/client";
import { InstanceRegistry, keepAlive } from "../../src/db/pg/instances";
import { migratePg } from "../../src/db/pg/migrate";
import { pgSql } from "../../src/db/pg/sql";
import type { Sql } from "../../src/db/sql";
import { sqliteClient } from "../../src/db/sqlite";
import { tempDir, waitFor } from "../helpers";
import { freshPgDatabase } from "./pg-helpers";

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Two clients (two instances' connections) on one freshly migrated database. */
type Backend = { name: string; pair(): Promise<[Sql, Sql]> };

const backends: Backend[] = [
  {
    name: "SQLite",
    async pair() {
      const tmp = tempDir("easel-instances-");
      const a = openDb(join(tmp.dir, "easel.db"));
      const b = openDb(join(tmp.dir, "easel.db"));
      cleanups.push(() => {
        a.$client.close();
        b.$client.close();
        tmp.cleanup();
      });
      return [sqliteClient(a.$client), sqliteClient(b.$client)];
    },
  },
  {
    name: "PostgreSQL",
    async pair() {
      const pg = await freshPgDatabase();
      cleanups.push(pg.drop);
      await migratePg(pg.sql);
      const other = new SQL(pg.url, { max: 2 });
      cleanups.push(() => other.close());
      return [pgSql(pg.sql), pgSql(other)];
    },
  },
];

const T0 = 1_765_000_000_000;
const TTL = 15_000;

describe.each(backends)("instances on $name", (backend) => {
  test("registered instances are listed live, oldest first, with what their heartbeats report", async () => {
    const [sqlA, sqlB] = await backend.pair();
    const a = new InstanceRegistry(sqlA);
    const b = new InstanceRegistry(sqlB);
    expect(await a.register({ id: "i-a", host: "host-a", version: "1.2.0" }, T0)).toEqual({
      id: "i-a",
      host: "host-a",
      version: "1.2.0",
      startedAt: T0,
      lastHeartbeatAt: T0,
      jobsRunning: 0,
    });
    await b.register({ id: "i-b", host: "host-b", version: "1.2.0" }, T0 + 1);
    expect(await b.heartbeat("i-b", 7, T0 + 5_000)).toBe(true);
    const live = await a.live(T0 + 6_000, TTL);
    expect(live.map((i) => [i.id, i.jobsRunning, i.lastHeartbeatAt])).toEqual([
      ["i-a", 0, T0],
      ["i-b", 7, T0 + 5_000],
    ]);
  });

  test("an instance whose heartbeat lapsed is reaped by a live one, once; its next heartbeat says so", async () => {
    const [sqlA, sqlB] = await backend.pair();
    const a = new InstanceRegistry(sqlA);
    const b = new InstanceRegistry(sqlB);
    await a.register({ id: "i-a", host: "host-a", version: "1" }, T0);
    await b.register({ id: "i-b", host: "host-b", version: "1" }, T0);
    // A keeps beating; B stops (killed) after its first.
    await a.heartbeat("i-a", 1, T0 + 10_000);
    await a.heartbeat("i-a", 1, T0 + 20_000);
    const now = T0 + 20_000;
    expect((await a.live(now, TTL)).map((i) => i.id)).toEqual(["i-a"]);
    // Both ask at once: the dead row goes to exactly one of them.
    const [byA, byB] = await Promise.all([a.reap(now, TTL), b.reap(now, TTL)]);
    expect([...byA, ...byB].map((i) => i.id)).toEqual(["i-b"]);
    expect(await a.reap(now, TTL)).toEqual([]);
    // B was only paused: its heartbeat finds its row gone, and it registers again.
    expect(await b.heartbeat("i-b", 0, now + 1)).toBe(false);
    await b.register({ id: "i-b", host: "host-b", version: "1" }, now + 1);
    expect((await a.live(now + 1, TTL)).map((i) => i.id)).toEqual(["i-a", "i-b"]);
    await b.deregister("i-b");
    expect((await a.live(now + 1, TTL)).map((i) => i.id)).toEqual(["i-a"]);
  });

  test("keepAlive heartbeats on its interval and reports when its row was reaped", async () => {
    const [sqlA, sqlB] = await backend.pair();
    const a = new InstanceRegistry(sqlA);
    const other = new InstanceRegistry(sqlB);
    await a.register({ id: "i-a", host: "host-a", version: "1" }, T0);
    let clock = T0;
    let running = 3;
    let reaped = 0;
    const beating = keepAlive(a, {
      id: "i-a",
      intervalMs: 10,
      now: () => (clock += 1_000),
      jobsRunning: () => running,
      onReaped: () => reaped++,
    });
    cleanups.push(() => beating.stop());
    await waitFor(async () => (await other.live(T0, TTL)).find((i) => i.lastHeartbeatAt >= T0 + 3_000), {
      what: "three heartbeats",
    });
    running = 5;
    await waitFor(async () => (await other.live(T0, TTL)).find((i) => i.jobsRunning === 5), {
      what: "the new running count",
    });
    // Taken for dead by another instance: the next beat finds no row.
    await other.reap(Number.MAX_SAFE_INTEGER, 0);
    await waitFor(() => reaped > 0, { what: "onReaped" });
    await beating.stop();
  });
});
