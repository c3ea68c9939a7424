/**
 * LISTEN/NOTIFY between two notifiers on one database, standing for two instances: delivery, transactions,
 * the payload limit and a LISTEN connection killed by the server.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { NOTIFY_PAYLOAD_LIMIT, NotifyPayloadTooLarge, PgNotifier } from "../../src/db/pg/notify";
import { pgSql } from "../../src/db/pg/sql";
import { type PgTestDb, pgDatabasePerTest } from "./pg-helpers";

const { cleanups, database } = pgDatabasePerTest();

let counter = 0;

/** One instance's notifier, with a LISTEN connection a test can find by its application name. */
function instance(pg: PgTestDb, log?: ConstructorParameters<typeof PgNotifier>[0]["log"]) {
  const applicationName = `easel-listen-test-${process.pid}-${++counter}`;
  const notifier = new PgNotifier({ url: pg.url, sql: pgSql(pg.sql), applicationName, log });
  cleanups.push(() => notifier.close());
  return { notifier, applicationName };
}

/** The payloads a channel receives, and a way to wait for the n-th. */
function inbox() {
  const got: string[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  return {
    got,
    handler: (payload: string) => {
      got.push(payload);
      for (const w of waiters.filter((w) => got.length >= w.n)) w.resolve();
    },
    until(n: number): Promise<void> {
      if (got.length >= n) return Promise.resolve();
      const { promise, resolve } = Promise.withResolvers<void>();
      waiters.push({ n, resolve });
      return promise;
    },
  };
}

test("a notification sent by one instance reaches every listening instance, the sender included", async () => {
  const pg = await database();
  const a = instance(pg);
  const b = instance(pg);
  const onA = inbox();
  const onB = inbox();
  expect(a.notifier.connected).toBe(false);
  await a.notifier.listen("jobs", onA.handler);
  await b.notifier.listen("jobs", onB.handler);
  expect(a.notifier.connected).toBe(true);
  await b.notifier.notify("jobs", "job-1");
  await b.notifier.notify("jobs", "job-2");
  await Promise.all([onA.until(2), onB.until(2)]);
  expect(onA.got).toEqual(["job-1", "job-2"]);
  expect(onB.got).toEqual(["job-1", "job-2"]);
});

test("inside a transaction a notification is sent when it commits, never when it rolls back", async () => {
  const pg = await database();
  const sql = pgSql(pg.sql);
  const sender = new PgNotifier({ url: pg.url, sql });
  cleanups.push(() => sender.close());
  const listener = instance(pg);
  const got = inbox();
  await listener.notifier.listen("wake", got.handler);
  await sql
    .transaction(async () => {
      await sender.notify("wake", "rolled back");
      throw new Error("no");
    })
    .catch(() => undefined);
  await sql.transaction(async () => {
    await sender.notify("wake", "committed");
    // Not before the commit: a listener reading back now would not find the rows yet.
    expect(got.got).toEqual([]);
  });
  await got.until(1);
  await sender.notify("wake", "after");
  await got.until(2);
  expect(got.got).toEqual(["committed", "after"]);
});

test(`a payload over ${NOTIFY_PAYLOAD_LIMIT} UTF-8 bytes is refused with a clear error`, async () => {
  const pg = await database();
  const { notifier } = instance(pg);
  const got = inbox();
  await notifier.listen("big", got.handler);
  const atLimit = "x".repeat(NOTIFY_PAYLOAD_LIMIT);
  await notifier.notify("big", atLimit);
  await got.until(1);
  expect(got.got[0]!.length).toBe(NOTIFY_PAYLOAD_LIMIT);
  // 3,951 two-byte characters: fewer characters than the limit, more bytes.
  const err = await notifier.notify("big", "é".repeat(3_951)).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(NotifyPayloadTooLarge);
  expect((err as Error).message).toBe(
    'NOTIFY payload on "big" is 7902 bytes, over the limit of 7900: send ids and read the rest back',
  );
  await expect(notifier.notify("x".repeat(64), "")).rejects.toThrow("must be 1 to 63 bytes long");
});

test("a LISTEN connection the server terminates reconnects, subscribes again, and later notifications arrive", async () => {
  const pg = await database();
  const warnings: string[] = [];
  const log = { warn: (_: unknown, msg: string) => warnings.push(msg), error: () => undefined };
  const listener = instance(pg, log);
  const sender = instance(pg);
  const jobs = inbox();
  const cards = inbox();
  await listener.notifier.listen("jobs", jobs.handler);
  await listener.notifier.listen("cards", cards.handler);
  const reconnected = Promise.withResolvers<boolean>();
  listener.notifier.onReconnect(() => reconnected.resolve(listener.notifier.connected));

  const [killed] = await pg.sql`
    SELECT count(*)::int AS n FROM (
      SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${listener.applicationName}
    ) AS k`;
  expect(killed.n).toBe(1);
  // Connected again, with both channels subscribed, by the time the reconnect handlers run.
  expect(await reconnected.promise).toBe(true);
  expect(warnings).toEqual(["LISTEN connection lost; reconnecting", "LISTEN connection restored"]);

  await sender.notifier.notify("jobs", "after the drop");
  await sender.notifier.notify("cards", "also");
  await Promise.all([jobs.until(1), cards.until(1)]);
  expect(jobs.got).toEqual(["after the drop"]);
  expect(cards.got).toEqual(["also"]);
});

test("a throwing handler is logged and the other handlers still run", async () => {
  const pg = await database();
  const errors: unknown[] = [];
  const { notifier } = instance(pg, { warn: () => undefined, error: (obj: unknown) => errors.push(obj) });
  const got = inbox();
  await notifier.listen("jobs", () => {
    throw new Error("handler bug");
  });
  await notifier.listen("jobs", got.handler);
  await notifier.notify("jobs", "one");
  await got.until(1);
  expect(errors).toMatchObject([{ channel: "jobs", err: { message: "handler bug" } }]);
});

test("an instance in another process receives a notification and its answer comes back", async () => {
  const pg = await database();
  const child = Bun.spawn(["bun", join(import.meta.dir, "fixtures", "pg-notify.ts"), pg.url, "cluster"], {
    stdout: "pipe",
    stderr: "inherit",
  });
  cleanups.push(() => child.kill(9));
  const { value } = await child.stdout.getReader().read();
  expect(new TextDecoder().decode(value)).toBe("ready\n");
  const { notifier } = instance(pg);
  const got = inbox();
  await notifier.listen("cluster", (payload) => {
    if (payload.startsWith("echo:")) got.handler(payload);
  });
  await notifier.notify("cluster", "job-42");
  await got.until(1);
  expect(got.got).toEqual(["echo:job-42"]);
});
