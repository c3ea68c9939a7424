/**
 * Refunds through the real engine and the placeholder provider's prompt triggers ([fail] = retryable provider
 * failure, [unsafe] = content policy, [slow] = a long call): full for a refundable failure, per failed item for a
 * partial batch, none for a content-policy failure, full on cancel, and never twice when a refunded job is
 * retried and fails again. Plus the refund rule itself on hand-made jobs.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { Job, JobItem } from "../../src/db/schema";
import { refundOwed } from "../../src/modules/credits/refunds";
import { createUser, expectLedgerInvariants, expectStatus, ledgerOf } from "../fixtures/backlog";
import { startTestServer, type TestServer, waitFor } from "../helpers";

const TERMINAL = ["completed", "partial", "failed", "cancelled"];

describe("refunds", () => {
  let server: TestServer;
  beforeAll(async () => {
    // One attempt per item and per job: a [fail] item fails at once instead of backing off.
    server = await startTestServer({
      env: { ITEM_MAX_ATTEMPTS: "1", JOB_MAX_ATTEMPTS: "1", BACKLOG_CRON: "0 0 1 1 *" },
    });
  });
  afterAll(() => server.close());
  afterEach(() => expectLedgerInvariants(server.ctx.db.$client));

  async function run(key: string, body: Record<string, unknown>): Promise<Job> {
    const { jobId } = await expectStatus<{ jobId: string }>(
      await server.api("/api/jobs/generate-image", { method: "POST", key, json: body }),
      202,
    );
    return finished(jobId);
  }

  function finished(id: string): Promise<Job> {
    return waitFor(
      async () => {
        const job = await server.ctx.queue.get(id);
        return job && TERMINAL.includes(job.status) ? job : null;
      },
      { timeoutMs: 15_000, what: `job ${id} to finish` },
    );
  }

  const reasons = (userId: string) => ledgerOf(server.ctx.db.$client, userId).map((r) => [r.reason, r.delta]);

  test("a refundable failure is refunded in full", async () => {
    const user = await createUser(server.api, { credits: 5 });
    const job = await run(user.key, { prompt: "[fail] a cat", n: 2 });
    expect(job.status).toBe("failed");
    expect(job.error?.code).toBe("provider_unavailable");
    expect(await server.ctx.queue.get(job.id)).toMatchObject({ creditsCharged: 2, creditsRefunded: 2 });
    expect(await server.ctx.credits.balance(user.id)).toBe(5);
    expect(reasons(user.id)).toEqual([
      ["grant", 5],
      ["charge", -2],
      ["refund", 2],
    ]);
  });

  test("a content-policy failure is not refunded", async () => {
    const user = await createUser(server.api, { credits: 5 });
    const job = await run(user.key, { prompt: "[unsafe] a cat" });
    expect(job.error).toMatchObject({ code: "content_policy", refundable: false });
    expect(await server.ctx.queue.get(job.id)).toMatchObject({ creditsCharged: 1, creditsRefunded: 0 });
    expect(await server.ctx.credits.balance(user.id)).toBe(4);
  });

  test("a partial batch is refunded per refundable failed item", async () => {
    const user = await createUser(server.api, { credits: 10 });
    const job = await run(user.key, {
      items: [
        { id: "ok1", prompt: "a fine cat" },
        { id: "broken", prompt: "[fail] a cat", n: 2 },
        { id: "ok2", prompt: "another fine cat" },
        { id: "unsafe", prompt: "[unsafe] a cat" },
      ],
    });
    expect(job.status).toBe("partial");
    // 5 images charged; the [fail] item's 2 come back, the [unsafe] one does not.
    expect(await server.ctx.queue.get(job.id)).toMatchObject({ creditsCharged: 5, creditsRefunded: 2 });
    expect(await server.ctx.credits.balance(user.id)).toBe(7);
  });

  test("a batch failing for mixed causes refunds only the refundable items", async () => {
    const user = await createUser(server.api, { credits: 10 });
    const job = await run(user.key, {
      items: [
        { id: "a", prompt: "[fail] one" },
        { id: "b", prompt: "[unsafe] two" },
      ],
    });
    expect(job.status).toBe("failed");
    expect(await server.ctx.queue.get(job.id)).toMatchObject({ creditsCharged: 2, creditsRefunded: 1 });
    expect(await server.ctx.credits.balance(user.id)).toBe(9);
  });

  test("a refunded job that is retried is charged again, and refunded again only for the new failure", async () => {
    const user = await createUser(server.api, { credits: 3 });
    const job = await run(user.key, { prompt: "[fail] retry me" });
    expect(await server.ctx.credits.balance(user.id)).toBe(3);
    for (let i = 0; i < 2; i++) {
      await expectStatus(
        await server.api(`/api/jobs/${job.id}/retry`, { method: "POST", key: user.key }),
        200,
      );
      const again = await finished(job.id);
      expect(again.status).toBe("failed");
    }
    expect(await server.ctx.queue.get(job.id)).toMatchObject({ creditsCharged: 1, creditsRefunded: 1 });
    expect(await server.ctx.credits.balance(user.id)).toBe(3);
    expect(reasons(user.id)).toEqual([
      ["grant", 3],
      ["charge", -1],
      ["refund", 1],
      ["charge", -1],
      ["refund", 1],
      ["charge", -1],
      ["refund", 1],
    ]);
  });

  test("a retried partial batch whose item fails again is not refunded again", async () => {
    const user = await createUser(server.api, { credits: 5 });
    const job = await run(user.key, {
      items: [
        { id: "ok", prompt: "fine" },
        { id: "bad", prompt: "[fail] bad" },
      ],
    });
    expect(job.status).toBe("partial");
    await expectStatus(await server.api(`/api/jobs/${job.id}/retry`, { method: "POST", key: user.key }), 200);
    expect((await finished(job.id)).status).toBe("partial");
    expect(await server.ctx.queue.get(job.id)).toMatchObject({ creditsCharged: 2, creditsRefunded: 1 });
    expect(await server.ctx.credits.balance(user.id)).toBe(4);
  });

  test("cancelling a running job refunds it in full", async () => {
    const user = await createUser(server.api, { credits: 5 });
    const { jobId } = await expectStatus<{ jobId: string }>(
      await server.api("/api/jobs/generate-image", {
        method: "POST",
        key: user.key,
        json: { prompt: "[slow] cat" },
      }),
      202,
    );
    await waitFor(async () => (await server.ctx.queue.get(jobId))?.status === "active", {
      what: "job active",
    });
    await expectStatus(await server.api(`/api/jobs/${jobId}/cancel`, { method: "POST", key: user.key }), 200);
    expect(await server.ctx.queue.get(jobId)).toMatchObject({ status: "cancelled", creditsRefunded: 1 });
    expect(await server.ctx.credits.balance(user.id)).toBe(5);
  });
});

describe("refundOwed", () => {
  const job = (over: Partial<Job>): Job =>
    ({ status: "failed", creditsCharged: 6, input: { n: 1 }, error: null, ...over }) as Job;
  const item = (
    status: JobItem["status"],
    error: Partial<NonNullable<JobItem["error"]>> | null = null,
    n?: number,
  ) => ({
    status,
    input: n === undefined ? { prompt: "x" } : { prompt: "x", n },
    error: error ? { code: "x", message: "", retryable: false, refundable: true, ...error } : null,
  });

  test("completed and uncharged jobs are owed nothing", () => {
    expect(refundOwed(job({ status: "completed" }), [item("completed")])).toBe(0);
    expect(refundOwed(job({ creditsCharged: 0 }), [item("failed")])).toBe(0);
  });

  test("invalid requests and content-policy failures are never refunded, whatever `refundable` says", () => {
    expect(
      refundOwed(job({}), [item("failed", { code: "provider_invalid_request", refundable: true })]),
    ).toBe(0);
    expect(refundOwed(job({}), [item("failed", { code: "content_policy", refundable: false })])).toBe(0);
    expect(refundOwed(job({}), [item("failed", { code: "provider_quota", refundable: false })])).toBe(0);
  });

  test("items never run are refunded by the job's error (cancel, stall, timeout)", () => {
    const cancelled = job({
      status: "cancelled",
      error: { code: "cancelled", message: "", retryable: false, refundable: true },
    });
    expect(refundOwed(cancelled, [item("completed"), item("pending"), item("pending")])).toBe(4);
  });

  test("the share follows images per item and rounds down; never more than charged", () => {
    const batch = job({ status: "partial", creditsCharged: 7 });
    expect(refundOwed(batch, [item("completed", null, 2), item("failed", {}, 1)])).toBe(2);
    expect(refundOwed(job({ creditsCharged: 3 }), [])).toBe(3);
  });
});
