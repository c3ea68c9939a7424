/**
 * The two ways the attack run got images without paying (issue "Trust" §1), through HTTP on a real server with
 * the placeholder provider: a dedupe replacement kept the first request's price, and cancel → retry re-ran a
 * refunded job for free. One worker slot, held by a `[slow]` job, keeps the jobs under test queued.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { Job } from "../../src/db/schema";
import { createUser, expectLedgerInvariants, expectStatus, grant, ledgerOf } from "../fixtures/backlog";
import { startTestServer, type TestServer, waitFor } from "../helpers";

const TERMINAL = ["completed", "partial", "failed", "cancelled"];

describe("credits cannot be bypassed", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      env: {
        WORKER_CONCURRENCY: "1",
        ITEM_MAX_ATTEMPTS: "1",
        JOB_MAX_ATTEMPTS: "1",
        BACKLOG_CRON: "0 0 1 1 *",
      },
    });
  });
  afterAll(() => server.close());
  afterEach(() => expectLedgerInvariants(server.ctx.db.$client));

  /** A generation as `key` (the admin's when undefined). */
  const submit = (key: string | undefined, body: Record<string, unknown>) =>
    server.api("/api/jobs/generate-image", { method: "POST", ...(key && { key }), json: body });
  const reasons = (userId: string) => ledgerOf(server.ctx.db.$client, userId).map((r) => [r.reason, r.delta]);
  const finished = (id: string) =>
    waitFor(
      async () => {
        const job = await server.ctx.queue.get(id);
        return job && TERMINAL.includes(job.status) ? job : null;
      },
      { timeoutMs: 30_000, what: `job ${id} to finish` },
    );

  /** Takes the only worker slot with a slow admin job until the returned function cancels it. */
  async function holdWorker(): Promise<() => Promise<void>> {
    const { jobId } = await expectStatus<{ jobId: string }>(
      await submit(undefined, { prompt: "[slow] hold" }),
      202,
    );
    await waitFor(async () => (await server.ctx.queue.get(jobId))?.status === "active", {
      what: "the slot taken",
    });
    return async () => {
      await server.api(`/api/jobs/${jobId}/cancel`, { method: "POST" });
      await finished(jobId);
    };
  }

  test("a dedupe replacement is priced again: 402 leaves the queued job untouched, then the difference is charged", async () => {
    const release = await holdWorker();
    const user = await createUser(server.api, { credits: 1 });
    const first = await expectStatus<{ jobId: string }>(
      await submit(user.key, { prompt: "one owl", dedupeKey: "X" }),
      202,
    );
    const big = {
      dedupeKey: "X",
      n: 4,
      items: Array.from({ length: 25 }, (_, i) => ({ id: `p${i}`, prompt: `owl ${i}` })),
    };
    const refused = await expectStatus<{ error: { code: string; required: number; available: number } }>(
      await submit(user.key, big),
      402,
    );
    expect(refused.error).toMatchObject({ code: "insufficient_credits", required: 99, available: 0 });
    const untouched = (await server.ctx.queue.get(first.jobId))!;
    expect(untouched).toMatchObject({ status: "queued", creditsCharged: 1 });
    expect(
      (await server.ctx.queue.items(first.jobId)).map((i) => (i.input as { prompt: string }).prompt),
    ).toEqual(["one owl"]);

    await grant(server.api, user.id, 99);
    const replaced = await expectStatus<{ jobId: string }>(await submit(user.key, big), 202);
    expect(replaced.jobId).toBe(first.jobId);
    expect(await server.ctx.credits.balance(user.id)).toBe(0);
    await release();
    const done = await finished(first.jobId);
    expect(done).toMatchObject({ status: "completed", creditsCharged: 100, creditsRefunded: 0 });
    const assets = server.ctx.db.$client
      .query("SELECT count(*) AS n FROM assets WHERE job_id = ?")
      .get(first.jobId) as { n: number };
    expect(assets.n).toBe(100);
    expect(reasons(user.id)).toEqual([
      ["grant", 1],
      ["charge", -1],
      ["grant", 99],
      ["charge", -99],
    ]);
  });

  test("a cheaper replacement refunds the difference", async () => {
    const release = await holdWorker();
    const user = await createUser(server.api, { credits: 10 });
    const first = await expectStatus<{ jobId: string }>(
      await submit(user.key, { prompt: "four owls", n: 4, dedupeKey: "cheap" }),
      202,
    );
    const second = await expectStatus<{ jobId: string }>(
      await submit(user.key, { prompt: "one owl", dedupeKey: "cheap" }),
      202,
    );
    expect(second.jobId).toBe(first.jobId);
    expect(await server.ctx.credits.balance(user.id)).toBe(9);
    await release();
    expect(await finished(first.jobId)).toMatchObject({ status: "completed", creditsCharged: 1 });
    expect(reasons(user.id)).toEqual([
      ["grant", 10],
      ["charge", -4],
      ["refund", 3],
    ]);
  });

  test("another user's job with the same dedupe key is never replaced", async () => {
    const release = await holdWorker();
    const a = await createUser(server.api, { credits: 5 });
    const b = await createUser(server.api, { credits: 5 });
    const ja = await expectStatus<{ jobId: string }>(
      await submit(a.key, { prompt: "a's owl", dedupeKey: "k" }),
      202,
    );
    const jb = await expectStatus<{ jobId: string }>(
      await submit(b.key, { prompt: "b's owl", dedupeKey: "k" }),
      202,
    );
    expect(jb.jobId).not.toBe(ja.jobId);
    expect(
      (await server.ctx.queue.items(ja.jobId)).map((i) => (i.input as { prompt: string }).prompt),
    ).toEqual(["a's owl"]);
    const view = await expectStatus<{ dedupeKey: string }>(
      await server.api(`/api/jobs/${ja.jobId}`, { key: a.key }),
      200,
    );
    expect(view.dedupeKey).toBe("k");
    await release();
    await Promise.all([finished(ja.jobId), finished(jb.jobId)]);
  });

  test("cancel then retry charges again: ten loops on one credit deliver one image, paid once", async () => {
    const release = await holdWorker();
    const user = await createUser(server.api, { credits: 1 });
    const { jobId } = await expectStatus<{ jobId: string }>(
      await submit(user.key, { prompt: "loop owl" }),
      202,
    );
    for (let i = 0; i < 10; i++) {
      await expectStatus(
        await server.api(`/api/jobs/${jobId}/cancel`, { method: "POST", key: user.key }),
        200,
      );
      expect(await server.ctx.credits.balance(user.id)).toBe(1);
      await expectStatus(
        await server.api(`/api/jobs/${jobId}/retry`, { method: "POST", key: user.key }),
        200,
      );
      expect(await server.ctx.credits.balance(user.id)).toBe(0);
    }
    await release();
    expect(await finished(jobId)).toMatchObject({
      status: "completed",
      creditsCharged: 1,
      creditsRefunded: 0,
    });
    expect(await server.ctx.credits.balance(user.id)).toBe(0);
  });

  test("a retry the balance can't pay is 402 and the job stays as it was", async () => {
    const user = await createUser(server.api, { credits: 1 });
    const { jobId } = await expectStatus<{ jobId: string }>(
      await submit(user.key, { prompt: "[fail] owl" }),
      202,
    );
    const failed = await finished(jobId);
    expect(failed).toMatchObject({ status: "failed", creditsCharged: 1, creditsRefunded: 1 });
    // The refunded credit is spent elsewhere.
    await expectStatus(
      await server.api(`/api/users/${user.id}/credits`, {
        method: "POST",
        json: { amount: 1, reason: "debit" },
      }),
      200,
    );
    const refused = await expectStatus<{ error: { code: string } }>(
      await server.api(`/api/jobs/${jobId}/retry`, { method: "POST", key: user.key }),
      402,
    );
    expect(refused.error.code).toBe("insufficient_credits");
    const after = (await server.ctx.queue.get(jobId))!;
    expect(after).toMatchObject({
      status: "failed",
      creditsCharged: 1,
      creditsRefunded: 1,
      updatedAt: failed.updatedAt,
    });
    expect((await server.ctx.queue.attempts(jobId)).filter((a) => a.outcome === "rerun")).toEqual([]);
  });

  test("a failed, refunded job that succeeds on retry is paid for", async () => {
    const user = await createUser(server.api, { credits: 2 });
    const { jobId } = await expectStatus<{ jobId: string }>(
      await submit(user.key, { prompt: `[fail-once] owl ${Bun.randomUUIDv7()}`, n: 2 }),
      202,
    );
    expect(await finished(jobId)).toMatchObject({ status: "failed", creditsRefunded: 2 });
    expect(await server.ctx.credits.balance(user.id)).toBe(2);
    await expectStatus(await server.api(`/api/jobs/${jobId}/retry`, { method: "POST", key: user.key }), 200);
    const done: Job = await finished(jobId);
    expect(done).toMatchObject({ status: "completed", creditsCharged: 2, creditsRefunded: 0 });
    expect(await server.ctx.credits.balance(user.id)).toBe(0);
    expect(reasons(user.id)).toEqual([
      ["grant", 2],
      ["charge", -2],
      ["refund", 2],
      ["charge", -2],
    ]);
  });
});
