/**
 * Back-pressure over real HTTP: an owner past MAX_QUEUED_PER_OWNER gets 429 and a full queue 503, both with
 * Retry-After, before anything is stored or charged; other owners and system work go on; the limits and
 * their use show in /api/queue/status and /metrics.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startTestServer, type TestServer } from "../helpers";

const PER_OWNER = 2;
const DEPTH = 4;

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    env: {
      MAX_QUEUED_PER_OWNER: String(PER_OWNER),
      MAX_QUEUE_DEPTH: String(DEPTH),
      CARD_DEBOUNCE_MS: "60000",
    },
  });
  // No worker takes anything: every accepted generation stays queued, so the counts are exact.
  await server.ctx.queue.stop(0);
}, 30_000);
afterAll(() => server.close());

type ErrorBody = {
  error: { code: string; message: string; details?: { limit: number; retryAfterMs: number } };
};

async function userWithCredits(name: string, credits: number): Promise<{ id: string; key: string }> {
  const res = await server.api("/api/users", { method: "POST", json: { name, role: "user" } });
  expect(res.status).toBe(201);
  const { user, key } = (await res.json()) as { user: { id: string }; key: string };
  const granted = await server.api(`/api/users/${user.id}/credits`, {
    method: "POST",
    json: { amount: credits },
  });
  expect(granted.status).toBe(200);
  return { id: user.id, key };
}

function generate(key: string, headers: Record<string, string> = {}): Promise<Response> {
  return server.api("/api/jobs/generate-image", {
    method: "POST",
    key,
    headers,
    json: { prompt: "a lighthouse at dusk", provider: "placeholder" },
  });
}

async function balance(key: string): Promise<number> {
  return ((await (await server.api("/api/credits", { key })).json()) as { credits: number }).credits;
}

const jobRows = () =>
  (
    server.ctx.db.$client.query("SELECT count(*) AS n FROM jobs WHERE type = 'generate'").get() as {
      n: number;
    }
  ).n;

type Usage = {
  limits: { maxQueuedPerOwner: number | null; maxQueueDepth: number | null };
  queued: number;
  busiestOwners: { ownerId: string; queued: number }[];
  oldestWaitingMs: number;
  oldestWaitingMsByType: Record<string, number>;
};

describe("back-pressure", () => {
  let alice: { id: string; key: string };
  let bob: { id: string; key: string };
  /** Every generation of Alice's was queued before this: the oldest waiting job has waited at least since. */
  let aliceQueuedBy = 0;

  test("an owner at MAX_QUEUED_PER_OWNER gets 429 with Retry-After; nothing is charged or stored", async () => {
    alice = await userWithCredits("alice", 10);
    for (let i = 0; i < PER_OWNER; i++) expect((await generate(alice.key)).status).toBe(202);
    aliceQueuedBy = Date.now();
    expect(await balance(alice.key)).toBe(10 - PER_OWNER);
    const rows = jobRows();

    const refused = await generate(alice.key, { "idempotency-key": "alice-3" });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    const body = (await refused.json()) as ErrorBody;
    expect(body.error.code).toBe("too_many_queued");
    expect(body.error.details?.limit).toBe(PER_OWNER);
    expect(await balance(alice.key)).toBe(10 - PER_OWNER);
    expect(jobRows()).toBe(rows);

    // "Not now" is not stored as the key's answer: once one of hers leaves the queue, the retry goes through.
    const listed = (await (await server.api("/api/jobs", { key: alice.key })).json()) as {
      jobs: { id: string }[];
    };
    const first = listed.jobs[0]!;
    expect(
      (await server.api(`/api/jobs/${first.id}/cancel`, { method: "POST", key: alice.key })).status,
    ).toBe(200);
    expect((await generate(alice.key, { "idempotency-key": "alice-3" })).status).toBe(202);
    expect(jobRows()).toBe(rows + 1);
  }, 30_000);

  test("another owner is not held back by her limit, until the queue is full: then 503 with Retry-After", async () => {
    bob = await userWithCredits("bob", 10);
    const carol = await userWithCredits("carol", 10);
    // Alice holds PER_OWNER queued generations; Bob fills the queue to DEPTH.
    for (let i = 0; i < DEPTH - PER_OWNER; i++) expect((await generate(bob.key)).status).toBe(202);
    const full = await generate(carol.key);
    expect(full.status).toBe(503);
    expect(Number(full.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(((await full.json()) as ErrorBody).error.code).toBe("queue_full");
    expect(await balance(carol.key)).toBe(10);
  });

  test("system work is not refused: a card's re-render is queued past the full queue", async () => {
    const poll = (tea: number) => ({
      question: "Tea or coffee?",
      creator: { name: "Bob", handle: "bob" },
      options: [
        { label: "Tea", votes: tea },
        { label: "Coffee", votes: 2 },
      ],
    });
    const created = await server.api("/api/cards", {
      method: "POST",
      key: bob.key,
      json: { template: "poll", data: poll(1) },
    });
    expect(`${created.status} ${await created.clone().text()}`).toStartWith("201 ");
    const { id } = (await created.json()) as { id: string };
    const before = await server.ctx.queue.depth.queued();
    const patched = await server.api(`/api/cards/${id}`, {
      method: "PATCH",
      key: bob.key,
      json: { data: poll(5) },
    });
    expect(patched.status).toBe(200);
    expect(before).toBeGreaterThanOrEqual(DEPTH);
    expect(await server.ctx.queue.depth.queued()).toBe(before + 1);
  }, 30_000);

  test("the limits and their use show in /api/queue/status and /metrics", async () => {
    const asked = Date.now();
    const status = (await await (await server.api("/api/queue/status")).json()) as { backpressure: Usage };
    const usage = status.backpressure;
    expect(usage.limits).toEqual({ maxQueuedPerOwner: PER_OWNER, maxQueueDepth: DEPTH });
    expect(usage.queued).toBe(await server.ctx.queue.depth.queued());
    expect(usage.busiestOwners).toEqual(
      [
        { ownerId: alice.id, queued: PER_OWNER },
        { ownerId: bob.id, queued: DEPTH - PER_OWNER },
      ].sort((a, b) => b.queued - a.queued || (a.ownerId < b.ownerId ? -1 : 1)),
    );
    expect(usage.oldestWaitingMsByType.generate).toBeGreaterThanOrEqual(asked - aliceQueuedBy);
    expect(usage.oldestWaitingMs).toBe(Math.max(...Object.values(usage.oldestWaitingMsByType)));

    const text = await (await server.api("/metrics")).text();
    const value = (series: string) => {
      const escaped = series.replace(/[{}]/g, "\\$&");
      return Number(new RegExp(`^${escaped} (\\S+)$`, "m").exec(text)?.[1]);
    };
    expect(value('easel_queue_limit{limit="per_owner"}')).toBe(PER_OWNER);
    expect(value('easel_queue_limit{limit="depth"}')).toBe(DEPTH);
    expect(value("easel_queue_depth")).toBe(usage.queued);
    expect(value("easel_queue_owner_queued_max")).toBe(PER_OWNER);
    expect(value('easel_queue_refusals_total{reason="owner_limit"}')).toBe(1);
    expect(value('easel_queue_refusals_total{reason="queue_full"}')).toBe(1);
    expect(value('easel_queue_oldest_waiting_seconds{type="generate"}')).toBeGreaterThanOrEqual(
      (asked - aliceQueuedBy) / 1000,
    );
  });
});
