/**
 * Idempotency under concurrency (issue "Trust" §2): twenty requests sent at once with one `Idempotency-Key`
 * do the work once and all get the same answer — an edit with an input image, a card, an instant claim. A
 * duplicate that outlives the wait gets 409 `idempotency_in_progress`; the same key with another body, 422.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import sharp from "sharp";
import {
  createRecipe,
  createUser,
  expectLedgerInvariants,
  expectStatus,
  ledgerOf,
  seedReadyBacklog,
} from "../fixtures/backlog";
import { startTestServer, type TestServer } from "../helpers";

const N = 20;

describe("Idempotency-Key under concurrency", () => {
  let server: TestServer;
  let image: string;
  beforeAll(async () => {
    server = await startTestServer({ env: { BACKLOG_CRON: "0 0 1 1 *", BACKLOG_TOPUP_DELAY_MS: "600000" } });
    const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: "#3a6" } })
      .png()
      .toBuffer();
    image = `data:image/png;base64,${png.toString("base64")}`;
  });
  afterAll(() => server.close());
  afterEach(() => expectLedgerInvariants(server.ctx.db.$client));

  const count = (sql: string, ...args: string[]) =>
    (server.ctx.db.$client.query(sql).get(...args) as { n: number }).n;

  /** Sends the same request N times at once; returns each status and body. */
  async function burst(path: string, key: string, json: unknown, idemKey: string) {
    const responses = await Promise.all(
      Array.from({ length: N }, () =>
        server.api(path, { method: "POST", key, json, headers: { "idempotency-key": idemKey } }),
      ),
    );
    return Promise.all(responses.map(async (r) => ({ status: r.status, body: await r.json() })));
  }

  test("20 parallel edits with one key: one job, one charge, one answer", async () => {
    const user = await createUser(server.api, { credits: 50 });
    const out = await burst(
      "/api/jobs/generate-image",
      user.key,
      { prompt: "make it blue", image },
      `edit-${Bun.randomUUIDv7()}`,
    );
    expect(out.map((o) => o.status)).toEqual(Array(N).fill(202));
    const ids = new Set(out.map((o) => (o.body as { jobId: string }).jobId));
    expect(ids.size).toBe(1);
    expect(count("SELECT count(*) AS n FROM jobs WHERE owner_id = ?", user.id)).toBe(1);
    expect(ledgerOf(server.ctx.db.$client, user.id).filter((r) => r.reason === "charge")).toHaveLength(1);
    expect(await server.ctx.credits.balance(user.id)).toBe(49);
  });

  test("20 parallel card creations with one key: one card", async () => {
    const user = await createUser(server.api, { credits: 1 });
    const card = {
      template: "poll",
      data: {
        question: "Tea or coffee?",
        creator: { name: "Ada", handle: "ada" },
        options: [
          { label: "Tea", votes: 3 },
          { label: "Coffee", votes: 5 },
        ],
      },
    };
    const out = await burst("/api/cards", user.key, card, `card-${Bun.randomUUIDv7()}`);
    expect(out.map((o) => o.status)).toEqual(Array(N).fill(201));
    expect(new Set(out.map((o) => (o.body as { id: string }).id)).size).toBe(1);
    expect(count("SELECT count(*) AS n FROM cards WHERE owner_id = ?", user.id)).toBe(1);
  });

  test("20 parallel instant claims with one key: one claim, one charge", async () => {
    await createRecipe(server.api, { id: "idem-owl", creditCost: 2, backlogMin: 0 });
    await seedReadyBacklog(server.ctx, "idem-owl", 5);
    const user = await createUser(server.api, { credits: 10 });
    const out = await burst(
      "/api/generate/instant",
      user.key,
      { recipeId: "idem-owl" },
      `claim-${Bun.randomUUIDv7()}`,
    );
    expect(out.map((o) => o.status)).toEqual(Array(N).fill(200));
    expect(new Set(out.map((o) => (o.body as { job: { id: string } }).job.id)).size).toBe(1);
    expect(
      count("SELECT count(*) AS n FROM jobs WHERE owner_id = ? AND recipe_id = 'idem-owl'", user.id),
    ).toBe(1);
    expect(ledgerOf(server.ctx.db.$client, user.id).filter((r) => r.reason === "instant")).toHaveLength(1);
    expect(await server.ctx.credits.balance(user.id)).toBe(8);
  });

  test("a replay says so; the same key with another request is 422; a client error is replayed, not re-run", async () => {
    const user = await createUser(server.api, { credits: 1 });
    const headers = { "idempotency-key": `k-${Bun.randomUUIDv7()}` };
    const send = (json: unknown) =>
      server.api("/api/jobs/generate-image", { method: "POST", key: user.key, json, headers });
    const first = await send({ prompt: "an owl" });
    expect(first.status).toBe(202);
    expect(first.headers.get("idempotent-replayed")).toBeNull();
    const again = await send({ prompt: "an owl" });
    expect(again.status).toBe(202);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    const replayed = (await again.json()) as { jobId: string };
    expect(replayed.jobId).toBe(((await first.json()) as { jobId: string }).jobId);
    const other = await expectStatus<{ error: { code: string } }>(await send({ prompt: "a fox" }), 422);
    expect(other.error.code).toBe("idempotency_key_reused");

    // Too few credits: the 402 is the key's answer, even once the user could pay.
    const poor = { "idempotency-key": `p-${Bun.randomUUIDv7()}` };
    const big = { prompt: "many owls", n: 4 };
    const refuse = () =>
      server.api("/api/jobs/generate-image", { method: "POST", key: user.key, json: big, headers: poor });
    expect((await refuse()).status).toBe(402);
    await expectStatus(
      await server.api(`/api/users/${user.id}/credits`, { method: "POST", json: { amount: 10 } }),
      200,
    );
    expect((await refuse()).status).toBe(402);
    expect(count("SELECT count(*) AS n FROM jobs WHERE owner_id = ?", user.id)).toBe(1);
  });
});

describe("Idempotency-Key with no wait", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { IDEMPOTENCY_WAIT_MS: "0", BACKLOG_CRON: "0 0 1 1 *" } });
  });
  afterAll(() => server.close());

  test("a duplicate that arrives while the first runs gets 409 idempotency_in_progress, never a second job", async () => {
    const user = await createUser(server.api, { credits: 100 });
    const headers = { "idempotency-key": `w-${Bun.randomUUIDv7()}` };
    const card = {
      template: "poll",
      data: {
        question: "Now?",
        creator: { name: "Ada", handle: "ada" },
        options: [
          { label: "Yes", votes: 1 },
          { label: "No", votes: 2 },
        ],
      },
    };
    const responses = await Promise.all(
      Array.from({ length: 10 }, () =>
        server.api("/api/cards", { method: "POST", key: user.key, json: card, headers }),
      ),
    );
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 201).length).toBeGreaterThanOrEqual(1);
    expect(statuses.every((s) => s === 201 || s === 409)).toBe(true);
    for (const r of responses.filter((r) => r.status === 409)) {
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe("idempotency_in_progress");
      expect(r.headers.get("retry-after")).toBe("1");
    }
    const n = server.ctx.db.$client
      .query("SELECT count(*) AS n FROM cards WHERE owner_id = ?")
      .get(user.id) as {
      n: number;
    };
    expect(n.n).toBe(1);
  });
});
