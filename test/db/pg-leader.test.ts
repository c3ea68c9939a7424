/**
 * Leadership by a session advisory lock: two contenders in this process stand for two instances, and a
 * contender in a child process is killed with SIGKILL to show the lock moving when its holder dies.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { type Leadership, runAsLeader } from "../../src/db/pg/leader";
import { waitFor } from "../helpers";
import { type PgTestDb, pgDatabasePerTest } from "./pg-helpers";

const { cleanups, database } = pgDatabasePerTest();

let counter = 0;

/** A contender that records its transitions and lets a test wait for the next one. */
function contender(pg: PgTestDb, name: string) {
  const applicationName = `easel-leader-test-${process.pid}-${++counter}`;
  const events: string[] = [];
  let waiting: { event: string; resolve: () => void } | null = null;
  const record = (event: string) => {
    events.push(event);
    if (waiting?.event === event) waiting.resolve();
  };
  const leadership: Leadership = runAsLeader(
    name,
    () => record("lead"),
    () => record("lose"),
    { url: pg.url, applicationName, intervalMs: 50 },
  );
  cleanups.push(() => leadership.stop());
  return {
    leadership,
    events,
    applicationName,
    /** Resolves at the next `event` (or at once when it is the latest one). */
    next(event: string): Promise<void> {
      if (events.at(-1) === event) return Promise.resolve();
      const { promise, resolve } = Promise.withResolvers<void>();
      waiting = { event, resolve };
      return promise;
    },
  };
}

/** Resolves when either contender leads, with the one that does. */
function firstToLead<T extends ReturnType<typeof contender>>(...cs: T[]): Promise<T> {
  return Promise.race(cs.map((c) => c.next("lead").then(() => c)));
}

test("one of two contenders leads; when it stops, the other takes over", async () => {
  const pg = await database();
  const a = contender(pg, "schedules");
  const b = contender(pg, "schedules");
  const leader = await firstToLead(a, b);
  const follower = leader === a ? b : a;
  // The follower keeps asking (every 50 ms) and keeps being refused while the leader holds the lock.
  await Bun.sleep(200);
  expect(follower.events).toEqual([]);
  expect(follower.leadership.leading).toBe(false);
  expect(leader.leadership.leading).toBe(true);

  await leader.leadership.stop();
  expect(leader.events).toEqual(["lead", "lose"]);
  await follower.next("lead");
  expect(follower.leadership.leading).toBe(true);
});

test("different names are led independently", async () => {
  const pg = await database();
  const a = contender(pg, "retention");
  const b = contender(pg, "backlog");
  await Promise.all([a.next("lead"), b.next("lead")]);
  expect([a.leadership.leading, b.leadership.leading]).toEqual([true, true]);
});

test("a leader whose session the server ends loses leadership, and the lock goes to one contender", async () => {
  const pg = await database();
  const a = contender(pg, "schedules");
  const b = contender(pg, "schedules");
  const leader = await firstToLead(a, b);
  await pg.sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${leader.applicationName}`;
  await waitFor(() => leader.events.includes("lose"), { what: "the old leader to notice" });
  expect(leader.events.slice(0, 2)).toEqual(["lead", "lose"]);
  // The old leader competes again on a new session: either may win, and exactly one leads.
  const leaders = await waitFor(
    () => {
      const now = [a, b].filter((c) => c.leadership.leading);
      return now.length > 0 ? now : null;
    },
    { what: "a new leader" },
  );
  expect(leaders).toHaveLength(1);
});

test("when the leading process is killed with SIGKILL, a contender in another process takes over", async () => {
  const pg = await database();
  const applicationName = `easel-leader-child-${process.pid}-${++counter}`;
  const child = Bun.spawn(
    ["bun", join(import.meta.dir, "fixtures", "pg-leader.ts"), pg.url, "schedules", applicationName],
    {
      stdout: "pipe",
      stderr: "inherit",
    },
  );
  cleanups.push(() => child.kill(9));
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  expect(new TextDecoder().decode(value)).toBe("leading\n");

  const here = contender(pg, "schedules");
  await Bun.sleep(200);
  expect(here.events).toEqual([]);
  child.kill(9);
  await child.exited;
  await here.next("lead");
  expect(here.leadership.leading).toBe(true);
});
