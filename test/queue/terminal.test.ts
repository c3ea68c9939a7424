import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { z } from "zod";
import type { Job } from "../../src/db/schema";
import { defineJob, type Queue, UnrecoverableError } from "../../src/queue";
import { dbOf, waitFor } from "../helpers";
import { type QueueFactory, queueBackends } from "./backends";

// bunfig's [test] timeout is not read by this Bun: the per-file default is set here, generously (a loaded
// machine makes these slower, never red).
setDefaultTimeout(60_000);

const backends = queueBackends();

type Logged = { obj: Record<string, unknown>; msg?: string };

/**
 * A queue whose global terminal hook writes a row, then throws; the definition's own hook only writes.
 * Both rows go to `hook_log`, so a test can see which hooks' writes survived.
 */
async function throwingQueue(factory: QueueFactory, opts: { now?: () => number; stalledMax?: number } = {}) {
  const errors: Logged[] = [];
  const log = {
    info: () => {},
    warn: () => {},
    debug: () => {},
    error: (obj: object, msg?: string) => void errors.push({ obj: obj as Record<string, unknown>, msg }),
  };
  let q: Queue | undefined;
  const record = (job: Job, hook: string) =>
    q!.sql.run("INSERT INTO hook_log (job_id, hook, status) VALUES (?, ?, ?)", [job.id, hook, job.status]);
  q = await factory.queue({
    ...opts,
    leaseMs: 1000,
    log,
    onTerminal: [
      {
        applies: () => true,
        run: async (job) => {
          await record(job, "global");
          throw new Error(`hook exploded for ${job.id}`);
        },
      },
    ],
  });
  await q.sql.run("CREATE TABLE hook_log (job_id TEXT, hook TEXT, status TEXT)");
  q.define(
    defineJob({
      type: "t",
      input: z.object({}),
      run: async ({ signal }) =>
        new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
      onTerminal: { applies: () => true, run: async (job) => void (await record(job, "definition")) },
    }),
    defineJob({
      type: "bad",
      input: z.object({}),
      run: async () => {
        throw new UnrecoverableError("no");
      },
      onTerminal: { applies: () => true, run: async (job) => void (await record(job, "definition")) },
    }),
  );
  const hookLog = (id: string) =>
    q!.sql.all("SELECT hook, status FROM hook_log WHERE job_id = ? ORDER BY hook", [id]);
  return { q, errors, hookLog };
}

describe.each(backends)("%s", (kind, factory) => {
  test("cancel works when a terminal hook throws: the job is cancelled, only the hook's own writes roll back", async () => {
    const { q, errors, hookLog } = await throwingQueue(factory);
    const { id } = await q.enqueue("t", {});
    const cancelled = await q.cancel(id);
    expect(cancelled?.status).toBe("cancelled");
    expect((await q.get(id))?.status).toBe("cancelled");
    // The definition's hook committed; the throwing global hook's insert was rolled back with its savepoint.
    expect(await hookLog(id)).toEqual([{ hook: "definition", status: "cancelled" }]);
    expect(errors).toEqual([
      { obj: expect.objectContaining({ jobId: id, status: "cancelled" }), msg: "terminal hook failed" },
    ]);
    if (kind === "sqlite") expect(dbOf(q).inTransaction).toBe(false);
  });

  test("an active job can be cancelled while its terminal hook throws", async () => {
    const { q, hookLog } = await throwingQueue(factory);
    const { id } = await q.enqueue("t", {});
    q.start();
    await waitFor(async () => (await q.get(id))?.status === "active", { what: "job to start" });
    expect((await q.cancel(id))?.status).toBe("cancelled");
    await waitFor(() => q.freeSlots === 8, { what: "slot to be freed" });
    expect((await q.get(id))?.status).toBe("cancelled");
    expect(await hookLog(id)).toEqual([{ hook: "definition", status: "cancelled" }]);
  });

  test("the stalled sweep still re-queues and fails every other job when a terminal hook throws", async () => {
    let now = Date.now();
    const { q, errors, hookLog } = await throwingQueue(factory, { now: () => now, stalledMax: 1 });
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await q.enqueue("t", {})).id);
    await factory.peer(q).claim("ghost:1:x", ["t"], 4, now, 1000);
    // Two of them have already stalled once: this sweep fails them (their hooks run, and throw).
    await q.sql.run("UPDATE jobs SET stalled_count = 1 WHERE id IN (?, ?)", [ids[0]!, ids[1]!]);
    now += 2000;
    expect(await q.recoverStalled()).toEqual({ requeued: 2, failed: 2 });
    expect(await Promise.all(ids.map(async (id) => (await q.get(id))?.status))).toEqual([
      "failed",
      "failed",
      "queued",
      "queued",
    ]);
    expect((await q.get(ids[0]!))?.error?.code).toBe("stalled");
    expect(await hookLog(ids[0]!)).toEqual([{ hook: "definition", status: "failed" }]);
    expect(await hookLog(ids[1]!)).toEqual([{ hook: "definition", status: "failed" }]);
    expect(errors.map((e) => e.obj.jobId)).toEqual([ids[0], ids[1]]);
    // The sweep committed: running it again finds nothing left to do.
    expect(await q.recoverStalled()).toEqual({ requeued: 0, failed: 0 });
  });

  test("the pool settles a job whose terminal hook throws (the same path as cancel and the sweep)", async () => {
    const { q, errors, hookLog } = await throwingQueue(factory);
    const { id } = await q.enqueue("bad", {});
    q.start();
    await waitFor(async () => (await q.get(id))?.status === "failed", { what: "job to fail" });
    expect(await hookLog(id)).toEqual([{ hook: "definition", status: "failed" }]);
    expect(errors.map((e) => e.msg)).toEqual(["terminal hook failed"]);
  });
});
