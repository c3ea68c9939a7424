import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { z } from "zod";
import type { Job } from "../../src/db/schema";
import { defineJob, type Queue, RetryAfterError, RetryableError, UnrecoverableError } from "../../src/queue";
import { backoffBounds, backoffDelay } from "../../src/queue/backoff";
import type { JobFilter } from "../../src/queue/list";
import type { RetentionCursor } from "../../src/queue/store";
import { dbOf, queuesPerTest, storeOf, waitFor } from "../helpers";
import { queueBackends } from "./backends";

const backends = queueBackends();
/** SQLite queues on fresh temp files, for the tests of SQLite itself (a busy file), stopped and removed after each test. */
const sqliteQueue = queuesPerTest();

const Any = z.object({}).passthrough();
const terminal = (q: Queue, id: string) =>
  waitFor(
    async () => {
      const j = await q.get(id);
      return j && ["completed", "partial", "failed", "cancelled"].includes(j.status) ? j : null;
    },
    { what: `job ${id} to finish` },
  );

// The engine's contract: the same tests on every backend.
describe.each(backends)("%s", (kind, { queue, peer }) => {
  describe("ordering", () => {
    test("higher priority runs first, then earlier run_at", async () => {
      const q = await queue({ concurrency: 1 });
      const order: string[] = [];
      q.define(
        defineJob({
          type: "t",
          input: z.object({ name: z.string() }),
          run: async ({ input }) => void order.push(input.name),
        }),
      );
      await q.enqueue("t", { name: "low" }, { priority: -5 });
      await q.enqueue("t", { name: "normal-1" });
      await q.enqueue("t", { name: "high" }, { priority: 10 });
      await q.enqueue("t", { name: "normal-2" });
      q.start();
      await waitFor(() => order.length === 4);
      expect(order).toEqual(["high", "normal-1", "normal-2", "low"]);
    });

    test("a delayed job waits for its time, then runs", async () => {
      const q = await queue();
      const started: number[] = [];
      q.define(defineJob({ type: "t", input: Any, run: async () => void started.push(Date.now()) }));
      q.start();
      const t0 = Date.now();
      const { id } = await q.enqueue("t", {}, { delayMs: 300 });
      await Bun.sleep(150);
      expect((await q.get(id))?.status).toBe("queued");
      expect((await q.stats()).delayed).toBe(1);
      await terminal(q, id);
      expect(started[0]! - t0).toBeGreaterThanOrEqual(295);
    });

    test("an idle pool starts an enqueued job at once (in-process wake-up, not the poll)", async () => {
      const q = await queue({ pollIntervalMs: 10_000 });
      let startedAt = 0;
      q.define(
        defineJob({
          type: "t",
          input: Any,
          run: async () => {
            startedAt = performance.now();
          },
        }),
      );
      q.start();
      await Bun.sleep(20);
      const t0 = performance.now();
      await q.enqueue("t", {});
      await waitFor(() => startedAt > 0);
      expect(startedAt - t0).toBeLessThan(100);
    });

    test("per-type concurrency caps how many of a type run at once", async () => {
      const q = await queue({ concurrency: 8 });
      let running = 0;
      let peak = 0;
      q.define(
        defineJob({
          type: "capped",
          input: Any,
          concurrency: 2,
          run: async () => {
            peak = Math.max(peak, ++running);
            await Bun.sleep(30);
            running--;
          },
        }),
      );
      const ids = await q.enqueueBulk(
        "capped",
        Array.from({ length: 8 }, () => ({})),
      );
      q.start();
      for (const id of ids) await terminal(q, id);
      expect(peak).toBe(2);
    });
  });

  describe("failures and retries", () => {
    test("backoff delays fall in their jittered bounds and grow exponentially", () => {
      const opts = { delayMs: 1000, maxDelayMs: 60_000, jitter: 0.25 };
      expect(backoffBounds(1, opts)).toEqual([750, 1250]);
      expect(backoffBounds(3, opts)).toEqual([3000, 5000]);
      expect(backoffBounds(10, opts)).toEqual([45_000, 60_000]);
      for (let attempt = 1; attempt <= 8; attempt++) {
        const [lo, hi] = backoffBounds(attempt, opts);
        for (let i = 0; i < 200; i++) {
          const d = backoffDelay(attempt, opts);
          expect(d).toBeGreaterThanOrEqual(lo);
          expect(d).toBeLessThanOrEqual(hi);
        }
      }
      expect(backoffDelay(2, opts, () => 0)).toBe(1500);
      expect(backoffDelay(2, opts, () => 1)).toBe(2500);
    });

    test("a retryable failure is retried after its backoff until attempts run out", async () => {
      const q = await queue();
      const at: number[] = [];
      q.define(
        defineJob({
          type: "flaky",
          input: Any,
          maxAttempts: 3,
          backoff: { delayMs: 100, jitter: 0.2 },
          run: async () => {
            at.push(Date.now());
            throw new RetryableError("upstream 503", { code: "provider_unavailable" });
          },
        }),
      );
      q.start();
      const { id } = await q.enqueue("flaky", {});
      const job = await terminal(q, id);
      expect(job.status).toBe("failed");
      expect(job.attempts).toBe(3);
      expect(job.error).toMatchObject({ code: "provider_unavailable", retryable: true });
      expect(at).toHaveLength(3);
      expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(78);
      expect(at[2]! - at[1]!).toBeGreaterThanOrEqual(158);
      // The timeline: the two attempts before the last, each with its error and when the next was due.
      const history = await q.attempts(id);
      expect(history.map((a) => [a.attempt, a.outcome, a.error?.code])).toEqual([
        [1, "retried", "provider_unavailable"],
        [2, "retried", "provider_unavailable"],
      ]);
      for (const a of history) {
        expect(a.startedAt!).toBeLessThanOrEqual(a.endedAt);
        expect(a.retryAt!).toBeGreaterThan(a.endedAt);
      }
      // An operator's retry makes the failed run history too.
      await q.retry(id);
      await terminal(q, id);
      expect((await q.attempts(id)).map((a) => a.outcome)).toEqual([
        "retried",
        "retried",
        "rerun",
        "retried",
        "retried",
      ]);
      expect((await q.attempts(id))[2]).toMatchObject({
        attempt: 3,
        error: { code: "provider_unavailable" },
      });
    });

    test("a retried job that succeeds ends completed with its result", async () => {
      const q = await queue();
      let calls = 0;
      q.define(
        defineJob({
          type: "t",
          input: Any,
          backoff: { delayMs: 10 },
          run: async () => {
            if (++calls < 2) throw new Error("boom");
            return { ok: true };
          },
        }),
      );
      const events: string[] = [];
      q.events.on("job:retrying", () => void events.push("retrying"));
      q.events.on("job:completed", () => void events.push("completed"));
      q.start();
      const job = await terminal(q, (await q.enqueue("t", {})).id);
      expect(job).toMatchObject({ status: "completed", result: { ok: true }, attempts: 2 });
      expect(events).toEqual(["retrying", "completed"]);
    });

    test("UnrecoverableError fails at once", async () => {
      const q = await queue();
      let calls = 0;
      q.define(
        defineJob({
          type: "t",
          input: Any,
          maxAttempts: 5,
          run: async () => {
            calls++;
            throw new UnrecoverableError("prompt refused", { code: "content_policy", refundable: false });
          },
        }),
      );
      q.start();
      const job = await terminal(q, (await q.enqueue("t", {})).id);
      expect(calls).toBe(1);
      expect(job.attempts).toBe(1);
      expect(job.error).toEqual({
        code: "content_policy",
        message: "prompt refused",
        retryable: false,
        refundable: false,
      });
    });

    test("RetryAfterError re-queues at the given time without spending an attempt", async () => {
      const q = await queue();
      const at: number[] = [];
      q.define(
        defineJob({
          type: "t",
          input: Any,
          maxAttempts: 1,
          run: async () => {
            at.push(Date.now());
            if (at.length <= 2) throw new RetryAfterError(150, "429 slow down");
            return "done";
          },
        }),
      );
      q.start();
      const job = await terminal(q, (await q.enqueue("t", {})).id);
      // maxAttempts 1, yet it ran three times: the two rate-limited runs did not count.
      expect(job).toMatchObject({ status: "completed", attempts: 1, result: "done" });
      expect(at).toHaveLength(3);
      expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(145);
    });

    test("a handler that ignores its signal and never resolves is timed out; its slot is freed", async () => {
      const q = await queue({ concurrency: 1 });
      let hung = 0;
      q.define(
        defineJob({
          type: "hang",
          input: Any,
          timeoutMs: 150,
          maxAttempts: 2,
          backoff: { delayMs: 10 },
          run: () => {
            hung++;
            return new Promise(() => {});
          },
        }),
        defineJob({ type: "quick", input: Any, run: async () => "ok" }),
      );
      q.start();
      const t0 = Date.now();
      const hang = await q.enqueue("hang", {});
      const quick = await q.enqueue("quick", {}, { priority: -1 });
      const failed = await terminal(q, hang.id);
      expect(failed.status).toBe("failed");
      expect(failed.error?.code).toBe("timeout");
      expect(hung).toBe(2);
      // With one slot, the quick job could only run because the hung attempts released it.
      expect((await terminal(q, quick.id)).status).toBe("completed");
      expect(Date.now() - t0).toBeLessThan(2000);
    });

    test("invalid stored input fails the job as unrecoverable", async () => {
      const q = await queue();
      q.define(defineJob({ type: "t", input: z.object({ n: z.number() }), run: async () => 1 }));
      const { id } = await q.enqueue("t", { n: 1 });
      await q.sql.run("UPDATE jobs SET input = ? WHERE id = ?", [JSON.stringify({ n: "x" }), id]);
      q.start();
      const job = await terminal(q, id);
      expect(job.status).toBe("failed");
      expect(job.error?.code).toBe("invalid_input");
    });

    test("enqueue validates input against the job's schema and rejects unknown types", async () => {
      const q = await queue();
      q.define(defineJob({ type: "t", input: z.object({ n: z.number() }), run: async () => 1 }));
      expect(() => q.enqueue("t", { n: "x" })).toThrow(/invalid input/);
      expect(() => q.enqueue("nope", {})).toThrow(/no job type/);
      expect((await q.stats()).waiting).toBe(0);
    });
  });

  describe("dedupe and debounce", () => {
    test("1,000 enqueues over ~5 windows run at most 6 times, the last run with the last input", async () => {
      const q = await queue();
      const seen: number[] = [];
      q.define(
        defineJob({
          type: "render",
          input: z.object({ n: z.number() }),
          run: async ({ input }) => {
            seen.push(input.n);
            await Bun.sleep(5);
          },
        }),
      );
      q.start();
      const ids = new Set<string>();
      const window = 100;
      const t0 = Date.now();
      for (let n = 0; n < 1000; n++) {
        ids.add((await q.enqueue("render", { n }, { dedupeKey: "card:1", debounceMs: window })).id);
        if (n % 200 === 199) await Bun.sleep(window);
        else if (n % 20 === 0) await Bun.sleep(1);
      }
      const elapsed = Date.now() - t0;
      await waitFor(
        async () =>
          (await q.stats()).waiting + (await q.stats()).delayed + (await q.stats()).active === 0 &&
          seen.at(-1) === 999,
        {
          what: "final render",
        },
      );
      expect(elapsed).toBeGreaterThan(4 * window);
      // At most one run per window of the stream (plus the trailing one): 6 when the enqueues themselves take
      // no time, a few more on a database a round trip away.
      expect(seen.length).toBeLessThanOrEqual(Math.floor(elapsed / window) + 1);
      expect(seen.length).toBeGreaterThanOrEqual(2);
      expect(seen.at(-1)).toBe(999);
      expect(ids.size).toBe(seen.length);
    });

    test("a repeat enqueue while queued replaces the input and keeps the job id and run_at", async () => {
      const q = await queue();
      q.define(defineJob({ type: "t", input: z.object({ v: z.number() }), run: async () => 1 }));
      const a = await q.enqueue("t", { v: 1 }, { dedupeKey: "k", debounceMs: 1000 });
      const b = await q.enqueue("t", { v: 2 }, { dedupeKey: "k", debounceMs: 1000 });
      expect(b.id).toBe(a.id);
      expect(b.deduped).toBe(true);
      const job = (await q.get(a.id))!;
      expect(job.input).toEqual({ v: 2 });
      expect(job.runAt).toBe(a.job.runAt);
      expect((await q.sql.get<{ n: number }>("SELECT count(*) AS n FROM jobs"))?.n).toBe(1);
    });

    test("an enqueue while the key's job is active queues one more run with the new data", async () => {
      const q = await queue();
      const seen: number[] = [];
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      q.define(
        defineJob({
          type: "t",
          input: z.object({ v: z.number() }),
          run: async ({ input }) => {
            seen.push(input.v);
            if (input.v === 1) await gate;
          },
        }),
      );
      q.start();
      const first = await q.enqueue("t", { v: 1 }, { dedupeKey: "k" });
      await waitFor(async () => (await q.get(first.id))?.status === "active");
      const second = await q.enqueue("t", { v: 2 }, { dedupeKey: "k", debounceMs: 20 });
      const third = await q.enqueue("t", { v: 3 }, { dedupeKey: "k", debounceMs: 20 });
      expect(second.id).not.toBe(first.id);
      expect(third.id).toBe(second.id);
      release();
      await terminal(q, second.id);
      expect(seen).toEqual([1, 3]);
    });
  });

  describe("batches", () => {
    const items = (n: number) => Array.from({ length: n }, (_, i) => ({ key: `i${i}`, input: { i } }));

    test("a batch with some items failing ends partial, naming them; retry re-runs only those", async () => {
      const q = await queue();
      const calls: string[] = [];
      let failing = new Set(["i3", "i7"]);
      q.define(
        defineJob({
          type: "batch",
          input: Any,
          items: {
            concurrency: 3,
            maxAttempts: 2,
            backoff: { delayMs: 5 },
            run: async ({ item }) => {
              calls.push(item.key);
              if (failing.has(item.key))
                throw new UnrecoverableError("unsafe", { code: "content_policy", refundable: false });
              return { result: { key: item.key } };
            },
          },
        }),
      );
      const progress: { ok: number; failed: number; message: string | null }[] = [];
      q.events.on(
        "job:progress",
        (e) =>
          void progress.push({ ok: e.completedItems ?? -1, failed: e.failedItems ?? -1, message: e.message }),
      );
      q.start();
      const { id } = await q.enqueue("batch", {}, { items: items(10) });
      const job = await terminal(q, id);
      expect(job.status).toBe("partial");
      expect(job.result).toMatchObject({
        totalItems: 10,
        completedItems: 8,
        failedItems: 2,
        failedIds: ["i3", "i7"],
      });
      expect(calls.toSorted()).toEqual(
        items(10)
          .map((i) => i.key)
          .toSorted(),
      );
      expect(progress).toHaveLength(10);
      // completedItems counts successes, as the result does; failures are counted apart.
      expect(progress.at(-1)).toEqual({ ok: 8, failed: 2, message: "10/10 items (2 failed)" });
      expect(progress.map((p) => p.ok + p.failed)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);

      failing = new Set();
      calls.length = 0;
      expect(await q.retry(id)).toMatchObject({ status: "queued" });
      const again = await terminal(q, id);
      expect(again.status).toBe("completed");
      expect(calls.toSorted()).toEqual(["i3", "i7"]);
      expect((await q.items(id)).every((i) => i.status === "completed")).toBe(true);
    });

    test("items retry retryable errors up to their own attempts; all failed → failed", async () => {
      const q = await queue();
      const attempts = new Map<string, number>();
      q.define(
        defineJob({
          type: "batch",
          input: Any,
          items: {
            maxAttempts: 3,
            backoff: { delayMs: 5 },
            run: async ({ item }) => {
              attempts.set(item.key, (attempts.get(item.key) ?? 0) + 1);
              throw new RetryableError("503");
            },
          },
        }),
      );
      q.start();
      const job = await terminal(q, (await q.enqueue("batch", {}, { items: items(3) })).id);
      expect(job.status).toBe("failed");
      expect(job.error).toMatchObject({ code: "retryable", retryable: false, refundable: true });
      expect([...attempts.values()]).toEqual([3, 3, 3]);
      expect((await q.items(job.id)).map((i) => i.attempts)).toEqual([3, 3, 3]);
    });

    test("an item that hangs is timed out on its own and the others complete", async () => {
      const q = await queue();
      q.define(
        defineJob({
          type: "batch",
          input: Any,
          items: {
            timeoutMs: 100,
            maxAttempts: 1,
            run: ({ item }) => (item.key === "i1" ? new Promise(() => {}) : Promise.resolve({ result: 1 })),
          },
        }),
      );
      q.start();
      const job = await terminal(q, (await q.enqueue("batch", {}, { items: items(3) })).id);
      expect(job.status).toBe("partial");
      expect(job.result).toMatchObject({ failedIds: ["i1"], errors: { i1: { code: "timeout" } } });
    });
  });

  describe("control", () => {
    test("cancel a queued job at once and an active one through its signal", async () => {
      const q = await queue();
      let aborted = false;
      q.define(
        defineJob({
          type: "slow",
          input: Any,
          run: ({ signal }) =>
            new Promise((_, reject) => {
              signal.addEventListener("abort", () => {
                aborted = true;
                reject(signal.reason);
              });
            }),
        }),
      );
      const queued = await q.enqueue("slow", {}, { delayMs: 60_000 });
      expect((await q.cancel(queued.id))?.status).toBe("cancelled");
      q.start();
      const active = await q.enqueue("slow", {});
      await waitFor(async () => (await q.get(active.id))?.status === "active");
      const cancelled: Job[] = [];
      q.events.on("job:cancelled", (e) => void cancelled.push(e.job));
      expect((await q.cancel(active.id))?.status).toBe("cancelled");
      await waitFor(() => aborted);
      await Bun.sleep(30);
      expect((await q.get(active.id))?.status).toBe("cancelled");
      expect(q.freeSlots).toBe(8);
      expect(cancelled.map((j) => j.id)).toEqual([active.id]);
      expect(await q.cancel(active.id)).toBeNull();
    });

    test("a job cancelled by another process is aborted here at the next heartbeat", async () => {
      const q = await queue({ leaseMs: 200 });
      let aborted = false;
      q.define(
        defineJob({
          type: "slow",
          input: Any,
          run: ({ signal }) =>
            new Promise((_, reject) =>
              signal.addEventListener("abort", () => {
                aborted = true;
                reject(signal.reason);
              }),
            ),
        }),
      );
      q.start();
      const { id } = await q.enqueue("slow", {});
      await waitFor(async () => (await q.get(id))?.status === "active");
      await peer(q).cancel(id, Date.now()); // as the CLI in another process would
      await waitFor(() => aborted, { timeoutMs: 1000 });
    });

    test("retention walks every type that ended in a status, a slice at a time, and keeps what is kept", async () => {
      let now = Date.now();
      const q = await queue({ now: () => now });
      const types = ["a", "b", "c"];
      for (const type of types) q.define(defineJob({ type, input: Any, run: async () => 1 }));
      q.start();
      const old: string[] = [];
      const kept: string[] = [];
      for (const type of types) {
        for (let i = 0; i < 5; i++) old.push((await q.enqueue(type, {})).id);
        kept.push((await q.enqueue(type, {}, { metadata: { keep: true } })).id);
      }
      for (const id of [...old, ...kept]) await terminal(q, id);
      now += 30 * 3_600_000;
      const recent: string[] = [];
      for (const type of types) recent.push((await q.enqueue(type, {})).id);
      for (const id of recent) await terminal(q, id);
      const retain = { completedHours: 24, failedHours: 24 };
      expect(await q.retentionDue(retain)).toBe(true);

      // Slices of 2 rows: the cursor moves within a type, then on to the next type, until none is left.
      const store = peer(q);
      const deleted: string[] = [];
      let cursor: RetentionCursor | null = null;
      let slices = 0;
      do {
        const from = cursor;
        const slice = await store.retentionTransaction(async () => {
          const found = await store.retentionSlice("completed", now - 24 * 3_600_000, from, 2);
          await found.delete();
          return found;
        });
        deleted.push(...slice.ids);
        cursor = slice.next;
        slices++;
      } while (cursor);
      expect(deleted.sort()).toEqual([...old].sort());
      expect(slices).toBeGreaterThanOrEqual(9);
      for (const id of [...kept, ...recent]) expect((await q.get(id))?.status).toBe("completed");
      expect(await q.cleanupRetention(retain)).toBe(0);
    });

    test("retention deletes old finished jobs and nothing else", async () => {
      let now = Date.now();
      const q = await queue({ now: () => now });
      q.define(
        defineJob({ type: "ok", input: Any, run: async () => 1 }),
        defineJob({
          type: "bad",
          input: Any,
          maxAttempts: 1,
          run: async () => Promise.reject(new UnrecoverableError("x")),
        }),
      );
      q.start();
      const oldDone = (await q.enqueue("ok", {})).id;
      const oldFailed = (await q.enqueue("bad", {})).id;
      await terminal(q, oldDone);
      await terminal(q, oldFailed);
      now += 30 * 3_600_000; // 30 h later
      const newDone = (await q.enqueue("ok", {})).id;
      await terminal(q, newDone);
      // Due only after every clock step below: the pool never takes it, and retention must not either.
      const waiting = (await q.enqueue("ok", {}, { delayMs: 1000 * 3_600_000 })).id;
      const retain = { completedHours: 24, failedHours: 168 };
      expect(await q.cleanupRetention(retain)).toBe(1);
      expect(await q.get(oldDone)).toBeNull();
      expect((await q.get(oldFailed))?.status).toBe("failed");
      expect((await q.get(newDone))?.status).toBe("completed");
      now += 200 * 3_600_000;
      expect(await q.cleanupRetention(retain)).toBe(2);
      expect(await q.get(oldFailed)).toBeNull();
      expect(await q.get(newDone)).toBeNull();
      expect((await q.get(waiting))?.status).toBe("queued");
    });

    test("lists filter by status (live and ended), type, excluded types, recipe and owner, newest first, page by page", async () => {
      const q = await queue();
      q.define(defineJob({ type: "ok", input: Any, run: async () => 1 }));
      q.define(defineJob({ type: "card.render", input: Any, run: async () => 1 }));
      q.define(
        defineJob({
          type: "bad",
          input: Any,
          run: async () => {
            throw new UnrecoverableError("no");
          },
        }),
      );
      q.start();
      const a = (await q.enqueue("ok", {}, { ownerId: "u1", recipeId: "r1" })).id;
      const b = (await q.enqueue("bad", {}, { ownerId: "u2" })).id;
      const c = (await q.enqueue("card.render", {}, { ownerId: "u1" })).id;
      for (const id of [a, b, c]) await terminal(q, id);
      const later = (await q.enqueue("ok", {}, { ownerId: "u1", delayMs: 3_600_000 })).id;
      const ids = async (filter: Partial<JobFilter>, limit = 10, cursor?: string) => {
        const page = await q.list({ scope: null, ...filter }, { limit, cursor });
        return { ids: page.jobs.map((j) => j.id), next: page.nextCursor };
      };
      expect((await ids({})).ids).toEqual([later, c, b, a]);
      expect((await ids({ status: "delayed" })).ids).toEqual([later]);
      expect((await ids({ status: "waiting" })).ids).toEqual([]);
      expect((await ids({ status: "queued" })).ids).toEqual([later]);
      expect((await ids({ status: "completed" })).ids).toEqual([c, a]);
      expect((await ids({ status: "failed" })).ids).toEqual([b]);
      expect((await ids({ type: "ok" })).ids).toEqual([later, a]);
      expect((await ids({ excludeTypes: ["card.*"] })).ids).toEqual([later, b, a]);
      expect((await ids({ excludeTypes: ["ok", "bad"] })).ids).toEqual([c]);
      expect((await ids({ recipeId: "r1" })).ids).toEqual([a]);
      expect((await ids({ scope: { ownerId: "u1", withEndUsers: false } })).ids).toEqual([later, c, a]);
      expect(
        (await ids({ scope: { ownerId: "u1", withEndUsers: false }, status: "completed", type: "ok" })).ids,
      ).toEqual([a]);
      // Pages: each ends where the next begins, and the last says there is no next.
      const first = await ids({ scope: { ownerId: "u1", withEndUsers: false } }, 2);
      expect(first).toEqual({ ids: [later, c], next: c });
      expect(await ids({ scope: { ownerId: "u1", withEndUsers: false } }, 2, first.next!)).toEqual({
        ids: [a],
        next: null,
      });
    });

    test("a job whose lease expired is re-queued by the sweep and fails after too many stalls", async () => {
      let now = Date.now();
      const q = await queue({ now: () => now, leaseMs: 1000, stalledMax: 1 });
      q.define(defineJob({ type: "t", input: Any, run: async () => 1 }));
      const { id } = await q.enqueue("t", {});
      // Claim it as a worker that then dies (never heartbeats).
      await peer(q).claim("ghost:1:x", ["t"], 1, now, 1000);
      now += 2000;
      expect(await q.recoverStalled()).toEqual({ requeued: 1, failed: 0 });
      expect(await q.get(id)).toMatchObject({ status: "queued", stalledCount: 1, attempts: 0 });
      expect(await peer(q).attempts(id)).toEqual([
        expect.objectContaining({ outcome: "stalled", endedAt: now }),
      ]);
      await peer(q).claim("ghost:1:x", ["t"], 1, now, 1000);
      now += 2000;
      expect(await q.recoverStalled()).toEqual({ requeued: 0, failed: 1 });
      expect(await q.get(id)).toMatchObject({ status: "failed", error: { code: "stalled" } });
    });

    test("the pool never works inside a caller's transaction suspended at an await: its rollback takes only its own job", async () => {
      const q = await queue();
      const ran: string[] = [];
      q.define(defineJob({ type: "t", input: Any, run: async ({ job }) => void ran.push(job.id) }));
      const before = await q.enqueue("t", {});
      q.start();
      let release!: () => void;
      const released = new Promise<void>((r) => {
        release = r;
      });
      let inside = "";
      const rolledBack = q.transaction(async () => {
        inside = (await q.enqueue("t", {})).id;
        await released;
        throw new Error("charge refused");
      });
      // Many turns of the event loop while the transaction is open: on SQLite the pool's ticks come and wait
      // (one writer); on PostgreSQL the pool works beside it, and never sees its uncommitted job.
      for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
      if (kind === "sqlite") expect(ran).toEqual([]);
      release();
      await expect(rolledBack).rejects.toThrow("charge refused");
      await waitFor(async () => (await q.get(before.id))?.status === "completed", {
        what: "the earlier job",
      });
      expect(inside).not.toBe("");
      expect(await q.get(inside)).toBeNull();
      expect(ran).toEqual([before.id]);
    });

    test("enqueue inside a caller's transaction commits with it, and a rollback leaves no job", async () => {
      const q = await queue();
      q.define(defineJob({ type: "t", input: Any, run: async () => 1 }));
      const queued: string[] = [];
      q.events.on("job:queued", (e) => void queued.push(e.job.id));
      await q.sql.run("CREATE TABLE charges (job_id TEXT)");
      const ok = await q.transaction(async () => {
        const { id } = await q.enqueue("t", {});
        await q.sql.run("INSERT INTO charges VALUES (?)", [id]);
        return id;
      });
      await expect(
        q.transaction(async () => {
          await q.enqueue("t", {});
          throw new Error("charge failed");
        }),
      ).rejects.toThrow("charge failed");
      await Bun.sleep(10);
      expect((await q.sql.get<{ n: number }>("SELECT count(*) AS n FROM jobs"))?.n).toBe(1);
      expect(queued).toEqual([ok]);
    });
  });
});

describe("a busy database", () => {
  test("a write lock held past busy_timeout delays claims without losing or crashing anything", async () => {
    const q = sqliteQueue({ pollIntervalMs: 20 });
    const path = dbOf(q).filename;
    dbOf(q).exec("PRAGMA busy_timeout = 20");
    const ran: string[] = [];
    q.define(defineJob({ type: "t", input: Any, run: async ({ job }) => void ran.push(job.id) }));
    const { id } = await q.enqueue("t", {});
    // Another connection (a backup, another process) takes the write lock and keeps it for a while.
    const other = new Database(path);
    other.exec("BEGIN IMMEDIATE");
    q.start();
    await Bun.sleep(300);
    expect(ran).toEqual([]);
    expect((await q.get(id))!.status).toBe("queued");
    other.exec("COMMIT");
    other.close();
    expect((await terminal(q, id)).status).toBe("completed");
    expect(ran).toEqual([id]);
  });
});

describe("retention slices (SQLite)", () => {
  test("retention sizes each type's slices from the floor: the size reached on one type never carries into the next", async () => {
    const q = sqliteQueue();
    const db = dbOf(q);
    const old = Date.now() - 48 * 3_600_000;
    const insert = db.prepare(
      `INSERT INTO jobs (id, type, status, input, max_attempts, run_at, created_at, finished_at, updated_at)
       VALUES (?, ?, 'completed', '{}', 1, ?3, ?3, ?3, ?3)`,
    );
    db.transaction(() => {
      for (let i = 0; i < 400; i++) insert.run(Bun.randomUUIDv7(), "cheap", old + i);
      for (let i = 0; i < 60; i++) insert.run(Bun.randomUUIDv7(), "dear", old + i);
    })();
    storeOf(q).recountEnded();
    const typeOf = db.prepare("SELECT type FROM jobs WHERE id = ?");
    const slices: string[] = [];
    // Slices far under a 1 s target grow by half each time; a new type starts again at 50.
    const deleted = await q.cleanupRetention({
      completedHours: 24,
      failedHours: 24,
      sliceMs: 1000,
      beforeDelete: (ids) => {
        slices.push(`${(typeOf.get(ids[0]!) as { type: string }).type} ${ids.length}`);
      },
    });
    expect(deleted).toBe(460);
    expect(slices).toEqual(["cheap 50", "cheap 75", "cheap 113", "cheap 162", "dear 50", "dear 10"]);
  });
});
