/**
 * Instant claims over real HTTP against a backlog made by the real engine (placeholder provider): 200
 * concurrent claims for 5 ready generations, ownership transfer of jobs and assets, charges and their
 * invariants, the fallback responses, idempotency, apps claiming for end users, retention of claimed and
 * unclaimed generations, the per-user rate limit and the top-up that follows a claim.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { TOPUP_JOB } from "../../src/modules/backlog/service";
import {
  createRecipe,
  createUser,
  expectLedgerInvariants,
  expectStatus,
  ledgerOf,
  seedReadyBacklog,
} from "../fixtures/backlog";
import { startTestServer, type TestServer, waitFor } from "../helpers";

type Asset = { id: string; url: string; thumbnailUrl: string | null; contentType: string };
type Claim = {
  job: { id: string; ownerId: string; status: string; recipeId: string; creditsCharged: number };
  assets: Asset[];
  creditsRemaining: number;
  claimedAt: number;
};
type Fallback = { error: { code: string }; fallbackToModal?: boolean };

const READY = 5;

async function readyCount(server: TestServer, recipeId: string): Promise<number> {
  return (await server.ctx.backlog.status((await server.ctx.recipes.get(recipeId))!)).ready;
}

/** Lets the backlog make `n` real generations of a recipe and waits until they are ready. */
async function fillBacklog(server: TestServer, recipeId: string, n: number): Promise<string[]> {
  await server.ctx.backlog.maintain({ recipeId });
  await waitFor(async () => (await readyCount(server, recipeId)) >= n, {
    timeoutMs: 20_000,
    what: `${n} ready`,
  });
  const rows = server.ctx.db.$client
    .query("SELECT id FROM jobs WHERE recipe_id = ? AND owner_id = ? AND status = 'completed'")
    .all(recipeId, await server.ctx.backlog.systemUserId()) as { id: string }[];
  return rows.map((r) => r.id);
}

describe("instant claims", () => {
  let server: TestServer;
  let backlogIds: string[];
  beforeAll(async () => {
    server = await startTestServer({
      env: {
        INSTANT_RATE_PER_MIN: "1000",
        // Top-ups stay queued for the whole file: the backlog holds exactly what each test put there.
        BACKLOG_TOPUP_DELAY_MS: "600000",
        BACKLOG_MAX_CONCURRENT: String(READY),
        BACKLOG_CRON: "0 0 1 1 *",
      },
    });
    await createRecipe(server.api, { id: "fox", creditCost: 2, backlogMin: READY });
    backlogIds = await fillBacklog(server, "fox", READY);
  }, 30_000);
  afterAll(() => server.close());
  afterEach(() => expectLedgerInvariants(server.ctx.db.$client));

  const claim = (
    key: string,
    body: Record<string, unknown> = { recipeId: "fox" },
    headers?: Record<string, string>,
  ) => server.api("/api/generate/instant", { method: "POST", key, json: body, headers });

  test("unclaimed backlog generations are invisible to users", async () => {
    const user = await createUser(server.api);
    const list = await expectStatus<{ jobs: { id: string }[] }>(
      await server.api("/api/jobs", { key: user.key }),
      200,
    );
    expect(list.jobs).toEqual([]);
    await expectStatus(await server.api(`/api/jobs/${backlogIds[0]}`, { key: user.key }), 404);
  });

  test("200 concurrent claims for 5 ready generations: exactly 5 succeed, each generation claimed once", async () => {
    const users = await Promise.all(Array.from({ length: 8 }, () => createUser(server.api, { credits: 10 })));
    const responses = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const user = users[i % users.length]!;
        const res = await claim(user.key);
        return { user, status: res.status, body: (await res.json()) as Claim & Fallback };
      }),
    );
    const won = responses.filter((r) => r.status === 200);
    const lost = responses.filter((r) => r.status !== 200);
    expect(won).toHaveLength(READY);
    expect(lost).toHaveLength(200 - READY);
    for (const r of lost) {
      expect([404, 409]).toContain(r.status);
      expect(r.body.fallbackToModal).toBe(true);
      expect(["no_instant_available", "instant_taken"]).toContain(r.body.error.code);
    }
    const claimed = won.map((r) => r.body.job.id);
    expect(new Set(claimed).size).toBe(READY);
    expect([...claimed].sort()).toEqual([...backlogIds].sort());
    for (const r of won) {
      expect(r.body.job).toMatchObject({
        ownerId: r.user.id,
        status: "completed",
        recipeId: "fox",
        creditsCharged: 2,
      });
      expect(r.body.assets).toHaveLength(1);
      const owners = server.ctx.db.$client
        .query("SELECT DISTINCT owner_id AS o FROM assets WHERE job_id = ?")
        .all(r.body.job.id) as { o: string }[];
      expect(owners).toEqual([{ o: r.user.id }]);
    }
    const charges = server.ctx.db.$client
      .query("SELECT job_id, delta FROM credit_ledger WHERE reason = 'instant'")
      .all() as { job_id: string; delta: number }[];
    expect(charges).toHaveLength(READY);
    expect(charges.every((c) => c.delta === -2)).toBe(true);
    expect(new Set(charges.map((c) => c.job_id))).toEqual(new Set(claimed));
    let spent = 0;
    for (const u of users) spent += 10 - (await server.ctx.credits.balance(u.id));
    expect(spent).toBe(READY * 2);
    expect(await readyCount(server, "fox")).toBe(0);
    const image = await fetch(won[0]!.body.assets[0]!.url);
    expect(image.status).toBe(200);
    expect(image.headers.get("content-type")).toBe("image/png");
    const topUps = server.ctx.db.$client
      .query("SELECT count(*) AS n FROM jobs WHERE type = ? AND status = 'queued'")
      .get(TOPUP_JOB) as { n: number };
    expect(topUps.n).toBe(1);
  });

  test("a claimed generation is the user's: in their job list, with servable images and no retention shield", async () => {
    const user = await createUser(server.api, { credits: 5 });
    const [id] = await seedReadyBacklog(server.ctx, "fox", 1);
    const redBefore = (await server.ctx.recipes.usage("fox")).find((u) => u.value === "red")?.count ?? 0;
    const won = await expectStatus<Claim>(await claim(user.key), 200);
    expect(won.job.id).toBe(id!);
    expect(won.creditsRemaining).toBe(3);
    const list = await expectStatus<{ jobs: { id: string }[] }>(
      await server.api("/api/jobs", { key: user.key }),
      200,
    );
    expect(list.jobs.map((j) => j.id)).toEqual([id!]);
    const detail = await expectStatus<{ assets: Asset[] }>(
      await server.api(`/api/jobs/${id}`, { key: user.key }),
      200,
    );
    expect(detail.assets.map((a) => a.id)).toEqual(won.assets.map((a) => a.id));
    const metadata = (await server.ctx.queue.get(id!))?.metadata;
    expect(metadata).toMatchObject({ instant: true, backlog: true, claimedAt: won.claimedAt });
    expect(metadata?.keep).toBe(false);
    const usage = (await server.ctx.recipes.usage("fox")).find((u) => u.value === "red");
    // The claim counts as a choice of the values it was made with.
    expect(usage?.count).toBe(redBefore + 1);
  });

  test("the claim answers the job as it is stored: ended at the claim, when it was made, the values it was made with", async () => {
    const user = await createUser(server.api, { credits: 5 });
    const [id] = await seedReadyBacklog(server.ctx, "fox", 1);
    const made = (await server.ctx.queue.get(id!))!;
    const won = await expectStatus<{
      job: Record<string, unknown>;
      variables: Record<string, unknown>;
      claimedAt: number;
    }>(await claim(user.key), 200);
    expect(won.variables).toEqual({ color: "red" });
    expect(won.job).toMatchObject({
      ownerId: user.id,
      creditsCharged: 2,
      finishedAt: won.claimedAt,
      updatedAt: won.claimedAt,
      instantClaim: { claimedAt: won.claimedAt, generatedAt: made.finishedAt },
    });
    const stored = await expectStatus<Record<string, unknown>>(
      await server.api(`/api/jobs/${id}`, { key: user.key }),
      200,
    );
    for (const field of Object.keys(won.job).filter((k) => k !== "request"))
      expect([field, stored[field]]).toEqual([field, won.job[field]]);
    // What the backlog recorded stays; the claim only adds to it.
    expect((await server.ctx.queue.get(id!))?.metadata).toEqual({
      ...made.metadata,
      keep: false,
      instant: true,
      claimedAt: won.claimedAt,
      generatedAt: made.finishedAt,
    });
  });

  test("too few credits is 402 and the generation stays in the backlog", async () => {
    const user = await createUser(server.api, { credits: 1 });
    const [id] = await seedReadyBacklog(server.ctx, "fox", 1);
    const body = await expectStatus<{ error: { code: string; required: number; available: number } }>(
      await claim(user.key),
      402,
    );
    expect(body.error).toMatchObject({ code: "insufficient_credits", required: 2, available: 1 });
    expect((await server.ctx.queue.get(id!))?.ownerId).toBe(await server.ctx.backlog.systemUserId());
    expect(ledgerOf(server.ctx.db.$client, user.id)).toHaveLength(1);
  });

  test("an empty backlog is 404 with fallbackToModal; unknown and inactive recipes are plain 404s", async () => {
    const user = await createUser(server.api, { credits: 100 });
    while ((await readyCount(server, "fox")) > 0) await expectStatus(await claim(user.key), 200);
    const empty = await expectStatus<Fallback>(await claim(user.key), 404);
    expect(empty).toMatchObject({ error: { code: "no_instant_available" }, fallbackToModal: true });
    const unknown = await expectStatus<Fallback>(await claim(user.key, { recipeId: "nope" }), 404);
    expect(unknown).toEqual({ error: expect.objectContaining({ code: "recipe_not_found" }) });
    await createRecipe(server.api, { id: "retired", active: false });
    await seedReadyBacklog(server.ctx, "retired", 1);
    await expectStatus(await claim(user.key, { recipeId: "retired" }), 404);
  });

  test("a claim that finds the last generation gone by its turn at the write lock is 409 with fallbackToModal", async () => {
    const [a, b] = await Promise.all([
      createUser(server.api, { credits: 5 }),
      createUser(server.api, { credits: 5 }),
    ]);
    const [id] = await seedReadyBacklog(server.ctx, "fox", 1);
    const users = [(await server.ctx.users.get(a.id))!, (await server.ctx.users.get(b.id))!];
    // Both look before either commits (same turn): one gets the generation, the other finds it taken.
    const outcomes = await Promise.allSettled(users.map((u) => server.ctx.instant.claim(u, "fox")));
    const won = outcomes.filter((o) => o.status === "fulfilled");
    const lost = outcomes.filter((o) => o.status === "rejected");
    expect(won.map((o) => o.value.job.id)).toEqual([id!]);
    expect(lost.map((o) => (o.reason as { toBody(): unknown }).toBody())).toEqual([
      { error: expect.objectContaining({ code: "instant_taken" }), fallbackToModal: true },
    ]);
    expect((await server.ctx.credits.balance(a.id)) + (await server.ctx.credits.balance(b.id))).toBe(8);
  });

  test("a claim refused inside a group commit rolls back alone: the generation stays ready", async () => {
    const poor = await createUser(server.api, { credits: 2 });
    const ids = await seedReadyBacklog(server.ctx, "fox", 2);
    const user = (await server.ctx.users.get(poor.id))!;
    // Both pass the balance check before either is charged; the second charge finds 0 credits.
    const outcomes = await Promise.allSettled([
      server.ctx.instant.claim(user, "fox"),
      server.ctx.instant.claim(user, "fox"),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "rejected"]);
    expect((outcomes[1] as PromiseRejectedResult).reason).toMatchObject({ code: "insufficient_credits" });
    expect(await server.ctx.queue.get(ids[1]!)).toMatchObject({
      ownerId: await server.ctx.backlog.systemUserId(),
      creditsCharged: 0,
    });
    expect(await readyCount(server, "fox")).toBe(1);
    expect(await server.ctx.credits.balance(poor.id)).toBe(0);
    expect(
      await expectStatus<Claim>(await claim((await createUser(server.api, { credits: 2 })).key), 200),
    ).toMatchObject({ job: { id: ids[1] } });
  });

  test("a group answers as its claims would one by one: a claim that lost the last generation pays nothing", async () => {
    await createRecipe(server.api, { id: "owl", creditCost: 2, backlogMin: 1 });
    await seedReadyBacklog(server.ctx, "owl", 1);
    await seedReadyBacklog(server.ctx, "fox", 2);
    const payer = (await server.ctx.users.get((await createUser(server.api, { credits: 4 })).id))!;
    const other = (await server.ctx.users.get((await createUser(server.api, { credits: 4 })).id))!;
    const { instant, recipes } = server.ctx;
    await recipes.active("owl");
    await recipes.active("fox");
    // One group (one turn of the event loop). The payer can afford two claims: whichever way the one owl
    // goes, the payer ends with two generations and no credits, never refused 402 for a reservation made by a
    // claim that found no generation.
    const outcomes = await Promise.allSettled([
      instant.claim(other, "owl"),
      instant.claim(payer, "owl"),
      instant.claim(payer, "fox"),
      instant.claim(payer, "fox"),
    ]);
    const codes = outcomes.map((o) => (o.status === "fulfilled" ? 200 : (o.reason as { code: string }).code));
    // One owl won; the other claim lost it (409), or, had it looked after that commit, found none (404).
    expect([codes[0], codes[1]].filter((c) => c === 200)).toHaveLength(1);
    expect(["instant_taken", "no_instant_available"]).toContain(
      String(codes[0] === 200 ? codes[1] : codes[0]),
    );
    const mine = server.ctx.db.$client
      .query("SELECT count(*) AS n FROM jobs WHERE owner_id = ?")
      .get(payer.id);
    expect(mine).toEqual({ n: 2 });
    expect(await server.ctx.credits.balance(payer.id)).toBe(0);
    expect(await server.ctx.credits.balance(other.id)).toBe(codes[0] === 200 ? 2 : 4);
  });

  test("a claim alone in its transaction, refused after taking the generation, leaves nothing behind", async () => {
    const poor = await createUser(server.api, { credits: 2 });
    const [id] = await seedReadyBacklog(server.ctx, "fox", 1);
    const backlogRow = await server.ctx.queue.get(id!);
    // Read with 2 credits, which are spent before the claim: it passes the early look, then its charge fails
    // after its transfer has been written, so the transaction (its own) must roll the transfer back.
    const user = (await server.ctx.users.get(poor.id))!;
    await server.ctx.credits.debit(user, 2, "debit", { note: "spent elsewhere" });
    await expect(server.ctx.instant.claim(user, "fox")).rejects.toMatchObject({
      code: "insufficient_credits",
    });
    expect(await server.ctx.queue.get(id!)).toEqual(backlogRow);
    const assets = server.ctx.db.$client.query("SELECT owner_id FROM assets WHERE job_id = ?").all(id!);
    expect(assets).toEqual([{ owner_id: await server.ctx.backlog.systemUserId() }]);
    expect(ledgerOf(server.ctx.db.$client, poor.id).map((r) => r.reason)).toEqual(["grant", "debit"]);
    expect(
      await expectStatus<Claim>(await claim((await createUser(server.api, { credits: 2 })).key), 200),
    ).toMatchObject({ job: { id } });
  });

  test("a repeated Idempotency-Key replays the claim without a second charge", async () => {
    const user = await createUser(server.api, { credits: 10 });
    await seedReadyBacklog(server.ctx, "fox", 2);
    const headers = { "idempotency-key": `k-${Bun.randomUUIDv7()}` };
    const first = await expectStatus<Claim>(await claim(user.key, { recipeId: "fox" }, headers), 200);
    const again = await expectStatus<Claim>(await claim(user.key, { recipeId: "fox" }, headers), 200);
    expect(again.job.id).toBe(first.job.id);
    expect(await server.ctx.credits.balance(user.id)).toBe(8);
    expect(await readyCount(server, "fox")).toBe(1);
  });

  test("an app claims for its end user, who pays and owns the generation; unlimited users pay nothing", async () => {
    const app = await createUser(server.api, { role: "app" });
    await expectStatus(
      await server.api("/api/tokens", { method: "POST", key: app.key, json: { userId: "bob" } }),
      201,
    );
    const bob = await expectStatus<{ userId: string }>(
      await server.api("/api/users/bob/credits", { method: "POST", key: app.key, json: { amount: 2 } }),
      200,
    );
    const won = await expectStatus<Claim>(await claim(app.key, { recipeId: "fox", userId: "bob" }), 200);
    expect(won.job.ownerId).toBe(bob.userId);
    expect(won.creditsRemaining).toBe(0);
    const vip = await createUser(server.api, { unlimited: true });
    await seedReadyBacklog(server.ctx, "fox", 1);
    const free = await expectStatus<Claim>(await claim(vip.key), 200);
    expect(free.job.creditsCharged).toBe(0);
    expect(ledgerOf(server.ctx.db.$client, vip.id)).toEqual([
      { delta: 0, reason: "instant", job_id: free.job.id, note: "unlimited: 2 not charged" },
    ]);
  });

  test("retention keeps unclaimed backlog generations; a claimed one follows the normal retention", async () => {
    const user = await createUser(server.api, { credits: 2 });
    const [claimedId, keptId] = await seedReadyBacklog(server.ctx, "fox", 2);
    expect((await expectStatus<Claim>(await claim(user.key), 200)).job.id).toBe(claimedId!);
    // Retention deletes what finished strictly before now, and the claim moved finished_at to the claim.
    await Bun.sleep(5);
    const deleted: string[] = [];
    await server.ctx.queue.cleanupRetention({
      completedHours: 0,
      failedHours: 0,
      beforeDelete: async (ids) => {
        deleted.push(...ids);
        await server.ctx.assets.takeForJobs(ids);
      },
    });
    expect(deleted).toContain(claimedId!);
    expect(deleted).not.toContain(keptId!);
    expect((await server.ctx.queue.get(keptId!))?.status).toBe("completed");
  });
});

describe("instant claims: rate limit and top-up", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      env: { INSTANT_RATE_PER_MIN: "2", BACKLOG_TOPUP_DELAY_MS: "0", BACKLOG_CRON: "0 0 1 1 *" },
    });
    await createRecipe(server.api, { id: "owl", backlogMin: 2 });
    await fillBacklog(server, "owl", 2);
  }, 30_000);
  afterAll(() => server.close());

  test("a claim is followed by a top-up of its recipe; past the per-user limit claims get 429 + Retry-After", async () => {
    const user = await createUser(server.api, { credits: 10 });
    const keyed = { "idempotency-key": `first-${Bun.randomUUIDv7()}` };
    const first = await expectStatus<Claim>(
      await server.api("/api/generate/instant", {
        method: "POST",
        key: user.key,
        json: { recipeId: "owl" },
        headers: keyed,
      }),
      200,
    );
    await waitFor(async () => (await readyCount(server, "owl")) === 2, {
      timeoutMs: 15_000,
      what: "backlog topped up",
    });
    await expectStatus(
      await server.api("/api/generate/instant", { method: "POST", key: user.key, json: { recipeId: "owl" } }),
      200,
    );
    const limited = await server.api("/api/generate/instant", {
      method: "POST",
      key: user.key,
      json: { recipeId: "owl" },
    });
    const body = await expectStatus<{ error: { code: string } }>(limited, 429);
    expect(body.error.code).toBe("rate_limited");
    const retryAfter = Number(limited.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(30);
    // A 429 is not an answer to keep: the same key asks again and is refused again, not replayed...
    const keyedAgain = { "idempotency-key": `late-${Bun.randomUUIDv7()}` };
    for (let i = 0; i < 2; i++) {
      const res = await server.api("/api/generate/instant", {
        method: "POST",
        key: user.key,
        json: { recipeId: "owl" },
        headers: keyedAgain,
      });
      expect(res.status).toBe(429);
    }
    expect(
      server.ctx.db.$client
        .query("SELECT count(*) AS n FROM idempotency_keys WHERE key = ?")
        .get(keyedAgain["idempotency-key"]),
    ).toEqual({ n: 0 });
    // ...while replaying an earlier claim spends no token: the same generation, even past the limit.
    const replay = await expectStatus<Claim>(
      await server.api("/api/generate/instant", {
        method: "POST",
        key: user.key,
        json: { recipeId: "owl" },
        headers: keyed,
      }),
      200,
    );
    expect(replay.job.id).toBe(first.job.id);
    const other = await createUser(server.api, { credits: 10 });
    await expectStatus(
      await server.api("/api/generate/instant", {
        method: "POST",
        key: other.key,
        json: { recipeId: "owl" },
      }),
      200,
    );
    expect(await server.ctx.credits.balance(user.id)).toBe(8);
    expectLedgerInvariants(server.ctx.db.$client);
  }, 20_000);
});
