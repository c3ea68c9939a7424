/**
 * Credits over real HTTP: grants and debits (who may), the balance and ledger view, charges when a generation is
 * enqueued (per image, per provider, per recipe), 402 with no job, unlimited users audited but never charged,
 * and CREDITS_ENABLED=false. The ledger invariants are checked after every test.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import sharp from "sharp";
import {
  createRecipe,
  createUser,
  expectLedgerInvariants,
  expectStatus,
  grant,
  ledgerOf,
} from "../fixtures/backlog";
import { startTestServer, type TestServer, waitFor } from "../helpers";

type CreditsView = {
  userId: string;
  credits: number;
  unlimited: boolean;
  creditsEnabled: boolean;
  ledger: {
    delta: number;
    balanceAfter: number;
    reason: string;
    jobId: string | null;
    note: string | null;
  }[];
  nextCursor: string | null;
};
type ErrorBody = { error: { code: string; message: string; required?: number; available?: number } };

const jobCount = (s: TestServer) =>
  (s.ctx.db.$client.query("SELECT count(*) AS n FROM jobs WHERE type = 'generate'").get() as { n: number }).n;

describe("credits", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      env: { PROVIDER_CREDIT_COSTS: '{"placeholder":2}', BACKLOG_CRON: "0 0 1 1 *", WORKER_CONCURRENCY: "1" },
    });
  });
  afterAll(() => server.close());
  afterEach(() => expectLedgerInvariants(server.ctx.db.$client));

  const generate = (key: string, body: Record<string, unknown>) =>
    server.api("/api/jobs/generate-image", { method: "POST", key, json: body });

  test("an admin grants and debits with notes; the user sees balance and ledger, newest first", async () => {
    const user = await createUser(server.api);
    await expectStatus(
      await server.api(`/api/users/${user.id}/credits`, {
        method: "POST",
        json: { amount: 10, note: "welcome" },
      }),
      200,
    );
    const debited = await expectStatus<{ credits: number }>(
      await server.api(`/api/users/${user.id}/credits`, {
        method: "POST",
        json: { amount: 3, reason: "debit", note: "chargeback" },
      }),
      200,
    );
    expect(debited.credits).toBe(7);
    const view = await expectStatus<CreditsView>(await server.api("/api/credits", { key: user.key }), 200);
    expect(view.credits).toBe(7);
    expect(view.creditsEnabled).toBe(true);
    expect(view.ledger.map((e) => [e.reason, e.delta, e.balanceAfter, e.note])).toEqual([
      ["debit", -3, 7, "chargeback"],
      ["grant", 10, 10, "welcome"],
    ]);
    const page = await expectStatus<CreditsView>(
      await server.api("/api/credits?limit=1", { key: user.key }),
      200,
    );
    expect(page.ledger).toHaveLength(1);
    const next = await expectStatus<CreditsView>(
      await server.api(`/api/credits?limit=1&cursor=${page.nextCursor}`, { key: user.key }),
      200,
    );
    expect(next.ledger[0]?.reason).toBe("grant");
    expect(next.nextCursor).toBeNull();
  });

  test("a debit beyond the balance is 402 with required and available, and changes nothing", async () => {
    const user = await createUser(server.api, { credits: 2 });
    const body = await expectStatus<ErrorBody>(
      await server.api(`/api/users/${user.id}/credits`, {
        method: "POST",
        json: { amount: 5, reason: "debit" },
      }),
      402,
    );
    expect(body.error).toMatchObject({ code: "insufficient_credits", required: 5, available: 2 });
    expect(ledgerOf(server.ctx.db.$client, user.id)).toHaveLength(1);
  });

  test("apps change their own end users' credits only; users may not change any", async () => {
    const app = await createUser(server.api, { role: "app" });
    const other = await createUser(server.api, { role: "app" });
    // Creating a job for the end user creates it (DESIGN §7); an app grants it by external id.
    await expectStatus(
      await server.api("/api/tokens", { method: "POST", key: app.key, json: { userId: "alice" } }),
      201,
    );
    const granted = await expectStatus<{ userId: string; credits: number }>(
      await server.api("/api/users/alice/credits", { method: "POST", key: app.key, json: { amount: 4 } }),
      200,
    );
    expect(granted.credits).toBe(4);
    const seen = await expectStatus<CreditsView>(
      await server.api("/api/credits?userId=alice", { key: app.key }),
      200,
    );
    expect(seen).toMatchObject({ userId: granted.userId, credits: 4 });
    // Another app names only its own end users: the same string is a new end user of its own, and alice's
    // balance does not move.
    const elsewhere = await expectStatus<{ userId: string; credits: number }>(
      await server.api(`/api/users/${granted.userId}/credits`, {
        method: "POST",
        key: other.key,
        json: { amount: 1 },
      }),
      200,
    );
    expect(elsewhere.userId).not.toBe(granted.userId);
    expect(await server.ctx.credits.balance(granted.userId)).toBe(4);
    await expectStatus(
      await server.api(`/api/users/${granted.userId}/credits`, {
        method: "POST",
        key: other.key,
        json: { amount: 2, reason: "debit" },
      }),
      402,
    );
    expect(await server.ctx.credits.balance(granted.userId)).toBe(4);
    // An admin names any user by internal or external id, reading and changing alike.
    const byAdmin = await expectStatus<CreditsView>(await server.api("/api/credits?userId=alice"), 200);
    expect(byAdmin).toMatchObject({ userId: granted.userId, credits: 4 });
    await expectStatus(
      await server.api("/api/users/alice/credits", { method: "POST", json: { amount: 1 } }),
      200,
    );
    expect(await server.ctx.credits.balance(granted.userId)).toBe(5);
    // Two apps' end users called "alice": the external id no longer says which, for reads or changes.
    await expectStatus(
      await server.api("/api/users/alice/credits", { method: "POST", key: other.key, json: { amount: 1 } }),
      200,
    );
    const ambiguous = await expectStatus<ErrorBody>(await server.api("/api/credits?userId=alice"), 409);
    expect(ambiguous.error.code).toBe("ambiguous_user");
    await expectStatus(
      await server.api("/api/users/alice/credits", { method: "POST", json: { amount: 1 } }),
      409,
    );
    // A grant may come before the end user's first image; a debit of someone unknown is 404.
    const bob = await expectStatus<{ userId: string; credits: number }>(
      await server.api("/api/users/bob/credits", { method: "POST", key: app.key, json: { amount: 5 } }),
      200,
    );
    expect(bob.credits).toBe(5);
    expect(await server.ctx.users.get(bob.userId)).toMatchObject({
      externalId: "bob",
      role: "user",
      parentId: app.id,
    });
    await expectStatus(
      await server.api("/api/users/carol/credits", {
        method: "POST",
        key: app.key,
        json: { amount: 1, reason: "debit" },
      }),
      404,
    );
    await expectStatus(
      await server.api(`/api/users/${app.id}/credits`, { method: "POST", key: app.key, json: { amount: 1 } }),
      403,
    );
    const user = await createUser(server.api);
    await expectStatus(
      await server.api(`/api/users/${user.id}/credits`, {
        method: "POST",
        key: user.key,
        json: { amount: 1 },
      }),
      403,
    );
  });

  test("a free prompt is charged per image at the provider's price, in the enqueue transaction", async () => {
    const user = await createUser(server.api, { credits: 5 });
    const accepted = await expectStatus<{ jobId: string }>(
      await generate(user.key, { prompt: "two cats", n: 2 }),
      202,
    );
    const job = (await server.ctx.queue.get(accepted.jobId))!;
    expect(job.creditsCharged).toBe(4);
    expect(ledgerOf(server.ctx.db.$client, user.id).at(-1)).toMatchObject({
      delta: -4,
      reason: "charge",
      job_id: accepted.jobId,
    });
    const before = jobCount(server);
    const refused = await expectStatus<ErrorBody>(await generate(user.key, { prompt: "one more cat" }), 402);
    expect(refused.error).toMatchObject({ code: "insufficient_credits", required: 2, available: 1 });
    expect(jobCount(server)).toBe(before);
    expect(await server.ctx.credits.balance(user.id)).toBe(1);
  });

  test("an edit refused for credits leaves no input image in storage", async () => {
    const user = await createUser(server.api, { credits: 1 });
    const listInputs = async () => {
      const keys: string[] = [];
      for await (const o of server.ctx.storage.list("inputs/")) keys.push(o.key);
      return keys;
    };
    const before = await listInputs();
    const png = await sharp({
      create: { width: 64, height: 64, channels: 3, background: "#3366cc" },
    })
      .png()
      .toBuffer();
    const image = `data:image/png;base64,${png.toString("base64")}`;
    await expectStatus<ErrorBody>(await generate(user.key, { prompt: "make it red", image }), 402);
    // Deleting the stored input is fire-and-forget after the 402; give it a moment.
    await waitFor(async () => (await listInputs()).length === before.length, { what: "inputs cleaned" });
    expect(await listInputs()).toEqual(before);
  });

  test("a batch is charged for every image of every item", async () => {
    const user = await createUser(server.api, { credits: 20 });
    const accepted = await expectStatus<{ jobId: string }>(
      await generate(user.key, {
        items: [
          { id: "a", prompt: "a" },
          { id: "b", prompt: "b", n: 3 },
        ],
      }),
      202,
    );
    expect((await server.ctx.queue.get(accepted.jobId))?.creditsCharged).toBe(8);
    expect(await server.ctx.credits.balance(user.id)).toBe(12);
  });

  test("a recipe generation costs the recipe's credit_cost per image", async () => {
    await createRecipe(server.api, { id: "pricey", creditCost: 5 });
    const user = await createUser(server.api, { credits: 10 });
    const accepted = await expectStatus<{ jobId: string }>(
      await generate(user.key, { recipeId: "pricey", variables: { color: "red" } }),
      202,
    );
    expect((await server.ctx.queue.get(accepted.jobId))?.creditsCharged).toBe(5);
    expect(await server.ctx.credits.balance(user.id)).toBe(5);
  });

  test("unlimited users are never charged; each charge is audited as a 0-delta row", async () => {
    const user = await createUser(server.api, { unlimited: true });
    const accepted = await expectStatus<{ jobId: string }>(
      await generate(user.key, { prompt: "free cat" }),
      202,
    );
    expect((await server.ctx.queue.get(accepted.jobId))?.creditsCharged).toBe(0);
    expect(ledgerOf(server.ctx.db.$client, user.id)).toEqual([
      { delta: 0, reason: "charge", job_id: accepted.jobId, note: "unlimited: 2 not charged" },
    ]);
    expect(await server.ctx.credits.balance(user.id)).toBe(0);
  });

  test("a request deduped into a queued job is not charged again; cancelling refunds", async () => {
    const user = await createUser(server.api, { credits: 10 });
    // One worker: while the blocker runs, the deduped job stays queued.
    const blocker = await expectStatus<{ jobId: string }>(
      await generate(user.key, { prompt: "[slow] blocker" }),
      202,
    );
    await waitFor(async () => (await server.ctx.queue.get(blocker.jobId))?.status === "active", {
      what: "blocker active",
    });
    const body = { prompt: "same cat", dedupeKey: `d-${Bun.randomUUIDv7()}` };
    const first = await expectStatus<{ jobId: string }>(await generate(user.key, body), 202);
    const second = await expectStatus<{ jobId: string }>(await generate(user.key, body), 202);
    expect(second.jobId).toBe(first.jobId);
    expect(await server.ctx.credits.balance(user.id)).toBe(6);
    await server.ctx.queue.cancel(first.jobId);
    await server.ctx.queue.cancel(blocker.jobId);
    expect(await server.ctx.credits.balance(user.id)).toBe(10);
  });
});

describe("CREDITS_ENABLED=false", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { CREDITS_ENABLED: "false", BACKLOG_CRON: "0 0 1 1 *" } });
  });
  afterAll(() => server.close());

  test("generations are free and write no charge rows; grants still work", async () => {
    const user = await createUser(server.api);
    const accepted = await expectStatus<{ jobId: string }>(
      await server.api("/api/jobs/generate-image", {
        method: "POST",
        key: user.key,
        json: { prompt: "free" },
      }),
      202,
    );
    expect((await server.ctx.queue.get(accepted.jobId))?.creditsCharged).toBe(0);
    expect(ledgerOf(server.ctx.db.$client, user.id)).toEqual([]);
    await grant(server.api, user.id, 3);
    const view = await expectStatus<CreditsView>(await server.api("/api/credits", { key: user.key }), 200);
    expect(view).toMatchObject({ credits: 3, creditsEnabled: false });
    expectLedgerInvariants(server.ctx.db.$client);
  });
});
