/**
 * Frames crossing instances over a real PostgreSQL's LISTEN/NOTIFY: two hubs, each with its own notifier (its
 * own LISTEN connection), stand for two Easel instances. A job's frames raised on A reach B's sockets and SSE
 * streams in order; an end too large for a notification is rebuilt on B from the database; card frames reach
 * the owner's room on B; nobody hears its own frames twice. Bun's pub/sub is played by a topic recorder.
 */
import { expect, test } from "bun:test";
import { PgNotifier } from "../../src/db/pg/notify";
import { pgSql } from "../../src/db/pg/sql";
import type { Job } from "../../src/db/schema";
import type { CardEvents } from "../../src/modules/cards/service";
import { RealtimeHub } from "../../src/modules/realtime/hub";
import { NotifyFrameRelay } from "../../src/modules/realtime/relay";
import { EventBus } from "../../src/queue";
import { pgDatabasePerTest } from "../db/pg-helpers";

const { cleanups, database } = pgDatabasePerTest();

type Published = { topic: string; frame: { type: string; progress?: number; result?: unknown } };

/** One instance: its queue events, card events, hub and relay, and what its sockets were sent. */
async function instance(url: string, name: string, jobs: Map<string, Job>) {
  const pg = new (await import("bun")).SQL(url, { max: 2 });
  const sql = pgSql(pg);
  const notifier = new PgNotifier({ url, sql, applicationName: `relay-test-${name}` });
  const relay = new NotifyFrameRelay(notifier, { instanceId: name });
  const events = new EventBus();
  const cards = new EventBus<CardEvents>();
  const published: Published[] = [];
  const streamed: string[] = [];
  const hub = new RealtimeHub(events, {
    progressIntervalMs: 5,
    describe: async () => ({ assets: [], failedItems: [], metadata: null }),
    cardEvents: cards,
    relay,
    getJob: async (id) => jobs.get(id) ?? null,
  });
  hub.attach({
    publish: (topic, data) => {
      published.push({ topic, frame: JSON.parse(data) });
      return data.length;
    },
  });
  hub.start();
  await relay.start();
  cleanups.push(async () => {
    hub.stop();
    await relay.stop();
    await notifier.close();
    await pg.close();
  });
  return { events, cards, hub, relay, published, streamed };
}

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

const job = (over: Partial<Job>): Job =>
  ({
    id: "j1",
    ownerId: "u1",
    status: "active",
    progress: 0,
    result: null,
    finishedAt: null,
    ...over,
  }) as Job;

test("a job's progress and end raised on A reach B's job and owner topics and SSE streams, in order", async () => {
  const pg = await database();
  const jobs = new Map<string, Job>();
  const a = await instance(pg.url, "A", jobs);
  const b = await instance(pg.url, "B", jobs);
  const sse: { chunk: string; terminal: boolean }[] = [];
  b.hub.listen("j1", (chunk, terminal) => sse.push({ chunk: new TextDecoder().decode(chunk), terminal }));

  const running = job({});
  for (let p = 10; p <= 50; p += 10) {
    a.events.emit("job:progress", { job: running, progress: p, message: `at ${p}` });
    await Bun.sleep(10);
  }
  const done = job({ status: "completed", result: { ok: 1 }, finishedAt: 1234 });
  jobs.set("j1", done);
  a.events.emit("job:completed", { job: done, result: done.result });

  const onB = () => b.published.filter((p) => p.topic === "job:j1");
  await until("B's end of j1", () => onB().some((p) => p.frame.type === "job_completed"));
  const frames = onB().map((p) => p.frame);
  expect(frames.at(-1)).toMatchObject({ type: "job_completed", result: { ok: 1 } });
  const progress = frames.filter((f) => f.type === "job_progress").map((f) => f.progress!);
  expect(progress.length).toBeGreaterThan(0);
  expect(progress).toEqual([...progress].sort((x, y) => x - y));
  expect(progress.at(-1)).toBe(50);
  // The owner's room on B hears the same frames.
  expect(b.published.filter((p) => p.topic === "user:u1").map((p) => p.frame.type)).toEqual(
    frames.map((f) => f.type),
  );
  await until("B's SSE end", () => sse.some((s) => s.terminal));
  expect(sse.at(-1)!.chunk).toContain("id: done-1234\nevent: job_completed");
  // The terminal mark that guards late WebSocket subscriptions holds on B too.
  expect(b.hub.terminalMark("j1")).toBeGreaterThan(0);

  // A published each frame once, to its own sockets only (it ignores its own notifications).
  await a.relay.flushed();
  await Bun.sleep(50);
  expect(a.published.filter((p) => p.topic === "job:j1" && p.frame.type === "job_completed")).toHaveLength(1);
});

test("an end too large for a notification is read back on B; a card frame reaches the owner's room on B", async () => {
  const pg = await database();
  const jobs = new Map<string, Job>();
  const a = await instance(pg.url, "A", jobs);
  const b = await instance(pg.url, "B", jobs);

  const big = { text: "x".repeat(20_000) };
  const done = job({ id: "big", status: "completed", result: big, finishedAt: 99 });
  jobs.set("big", done);
  a.events.emit("job:completed", { job: done, result: big });
  await until("B's end of the big job", () => b.published.some((p) => p.topic === "job:big"));
  const end = b.published.find((p) => p.topic === "job:big")!.frame;
  expect(end).toMatchObject({ type: "job_completed", result: big });

  a.cards.emit("card:rendered", { cardId: "c1", ownerId: "u7", version: 3, imageUrl: "/files/c1-v3.png" });
  await until("B's card frame", () => b.published.some((p) => p.topic === "user:u7"));
  expect(b.published.find((p) => p.topic === "user:u7")!.frame).toEqual({
    type: "card_rendered",
    cardId: "c1",
    imageUrl: "/files/c1-v3.png",
    version: 3,
  } as never);
});
