import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { z } from "zod";
import { defineJob, UnrecoverableError } from "../../src/queue";
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from "../helpers";
import { Receiver } from "./receiver";

const jobTypes = [
  defineJob({
    type: "work",
    input: z.object({ steps: z.number() }),
    run: async ({ input, progress }) => {
      for (let i = 1; i <= input.steps; i++) progress((i * 100) / input.steps);
      return { steps: input.steps };
    },
  }),
  defineJob({
    type: "fail",
    input: z.object({}),
    maxAttempts: 1,
    run: async () => {
      throw new UnrecoverableError("nope", { code: "nope" });
    },
  }),
  defineJob({
    type: "batch",
    input: z.object({}),
    items: { run: async () => ({ result: { ok: true } }) },
  }),
];

type Endpoint = {
  id: string;
  url: string;
  events: string[];
  status: string;
  failureCount: number;
  disabledReason: string | null;
  secret?: string;
};
type Delivery = {
  id: string;
  endpointId: string | null;
  jobId: string | null;
  eventType: string;
  status: string;
  attempts: number;
  lastStatusCode: number | null;
  lastError: string | null;
  nextAttemptAt: number | null;
};

const receivers: Receiver[] = [];
afterEach(() => {
  for (const r of receivers.splice(0)) r.stop();
});

function receiver(): Receiver {
  const r = new Receiver();
  receivers.push(r);
  return r;
}

async function json<T>(res: Response, status: number): Promise<T> {
  const text = await res.text();
  expect(`${res.status} ${text}`).toStartWith(`${status} `);
  return (text ? JSON.parse(text) : null) as T;
}

async function createUser(s: TestServer, role: "user" | "app" = "user") {
  const res = await s.api("/api/users", { method: "POST", json: { name: `${role}-${Date.now()}`, role } });
  const body = await json<{ user: { id: string }; key: string }>(res, 201);
  return { id: body.user.id, key: body.key };
}

async function register(s: TestServer, key: string, r: Receiver, events?: string[]): Promise<Endpoint> {
  const ep = await json<Endpoint>(
    await s.api("/api/webhooks", { method: "POST", key, json: { url: r.url, events } }),
    201,
  );
  r.secrets.push(ep.secret!);
  return ep;
}

const deliveries = async (s: TestServer, key: string, endpointId: string) =>
  (
    await json<{ deliveries: Delivery[] }>(
      await s.api(`/api/webhooks/${endpointId}/deliveries`, { key }),
      200,
    )
  ).deliveries;

const endpoint = async (s: TestServer, key: string, id: string) =>
  json<Endpoint>(await s.api(`/api/webhooks/${id}`, { key }), 200);

const deliverJobs = (s: TestServer) =>
  s.ctx.db.$client
    .query("SELECT id, status, error, input FROM jobs WHERE type = 'webhook.deliver'")
    .all() as {
    id: string;
    status: string;
    error: string | null;
    input: string;
  }[];

describe("webhooks", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      jobs: jobTypes,
      env: {
        ALLOW_PRIVATE_URLS: "true",
        WEBHOOK_RETRY_SCALE: "0.02",
        WEBHOOK_TIMEOUT_MS: "500",
        CREDITS_ENABLED: "false",
      },
    });
  });
  afterAll(() => server.close());

  test("endpoints: create (secret shown once), list, get, delete; others' endpoints are 404", async () => {
    const u = await createUser(server);
    const other = await createUser(server);
    const r = receiver();
    const created = await register(server, u.key, r, ["job.completed", "job.failed"]);
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    expect(Buffer.from(created.secret!.slice(6), "base64")).toHaveLength(24);
    expect(created).toMatchObject({ url: r.url, events: ["job.completed", "job.failed"], status: "active" });

    const list = await json<{ endpoints: Endpoint[] }>(
      await server.api("/api/webhooks", { key: u.key }),
      200,
    );
    expect(list.endpoints.map((e) => e.id)).toEqual([created.id]);
    expect(list.endpoints[0]).not.toHaveProperty("secret");
    expect(await endpoint(server, u.key, created.id)).not.toHaveProperty("secret");
    expect((await server.api(`/api/webhooks/${created.id}`, { key: other.key })).status).toBe(404);
    expect(
      (await server.api(`/api/webhooks/${created.id}`, { key: other.key, method: "DELETE" })).status,
    ).toBe(404);

    const bad = await server.api("/api/webhooks", {
      method: "POST",
      key: u.key,
      json: { url: r.url, events: ["nope"] },
    });
    expect(bad.status).toBe(422);
    const all = await json<Endpoint>(
      await server.api("/api/webhooks", { method: "POST", key: u.key, json: { url: r.url } }),
      201,
    );
    expect(all.events).toEqual(["*"]);

    expect((await server.api(`/api/webhooks/${created.id}`, { key: u.key, method: "DELETE" })).status).toBe(
      204,
    );
    expect((await server.api(`/api/webhooks/${created.id}`, { key: u.key })).status).toBe(404);
    expect((await server.api("/api/webhooks", { key: null })).status).toBe(401);
  });

  test("a job's events reach the owner's endpoint, signed per Standard Webhooks", async () => {
    const u = await createUser(server);
    const r = receiver();
    const ep = await register(server, u.key, r);
    const id = (await server.ctx.queue.enqueue("work", { steps: 3 }, { ownerId: u.id })).id;
    await waitFor(() => r.ofType("job.completed").length === 1, { what: "job.completed" });
    await waitFor(() => r.accepted().length === 3, { what: "three deliveries" });

    expect(r.received.every((x) => x.verified)).toBe(true);
    expect(
      r
        .accepted()
        .map((x) => x.type)
        .sort(),
    ).toEqual(["job.completed", "job.progress", "job.started"]);
    const completed = r.ofType("job.completed")[0]!;
    expect(completed.body.data).toMatchObject({
      jobId: id,
      jobType: "work",
      status: "completed",
      userId: u.id,
      result: { steps: 3 },
    });
    expect(Date.parse(completed.body.timestamp)).toBeGreaterThan(0);
    expect(Math.abs(completed.timestamp - Date.now() / 1000)).toBeLessThan(60);
    expect(completed.id).toMatch(/^msg_/);
    // Progress is throttled to one per second per job: three quick updates make one webhook.
    expect(r.ofType("job.progress")[0]!.body.data).toMatchObject({ progress: 33 });

    // The receiver has answered; each attempt is recorded once its answer is back (waited for, not raced).
    const list = await waitFor(
      async () => {
        const rows = await deliveries(server, u.key, ep.id);
        return rows.every((d) => d.status !== "pending") ? rows : null;
      },
      { what: "the three attempts recorded" },
    );
    expect(list).toHaveLength(3);
    expect(list.every((d) => d.status === "delivered" && d.attempts === 1 && d.lastStatusCode === 200)).toBe(
      true,
    );
  });

  test("batch jobs send one job.progress per finished item; failures send job.failed", async () => {
    const u = await createUser(server);
    const r = receiver();
    await register(server, u.key, r, ["job.progress", "job.failed", "job.completed"]);
    const batch = (
      await server.ctx.queue.enqueue(
        "batch",
        {},
        { ownerId: u.id, items: ["a", "b", "c"].map((key) => ({ key, input: {} })) },
      )
    ).id;
    const failed = (await server.ctx.queue.enqueue("fail", {}, { ownerId: u.id })).id;
    await waitFor(() => r.ofType("job.completed").length === 1 && r.ofType("job.failed").length === 1);
    await waitFor(() => r.ofType("job.progress").length === 3);
    expect(
      r
        .ofType("job.progress")
        .map((x) => x.body.data.completedItems)
        .sort(),
    ).toEqual([1, 2, 3]);
    expect(
      r.ofType("job.progress").every((x) => x.body.data.totalItems === 3 && x.body.data.jobId === batch),
    ).toBe(true);
    expect(r.ofType("job.failed")[0]!.body.data).toMatchObject({ jobId: failed, error: { code: "nope" } });
    expect(r.ofType("job.started")).toEqual([]);
  });

  test("apps receive their end users' events; a job's own webhookUrl is signed with the account secret", async () => {
    const app = await createUser(server, "app");
    const stranger = await createUser(server);
    const appHook = receiver();
    const strangerHook = receiver();
    const jobHook = receiver();
    await register(server, app.key, appHook, ["job.completed"]);
    await register(server, stranger.key, strangerHook);
    const { secret } = await json<{ secret: string }>(
      await server.api("/api/webhooks/secret", { key: app.key }),
      200,
    );
    expect(secret).toMatch(/^whsec_/);
    jobHook.secrets.push(secret);
    const tokenRes = await server.api("/api/tokens", {
      method: "POST",
      key: app.key,
      json: { userId: "end-1" },
    });
    const { userId } = await json<{ userId: string }>(tokenRes, 201);

    const { id } = await server.ctx.queue.enqueue(
      "work",
      { steps: 1 },
      { ownerId: userId, webhookUrl: jobHook.url },
    );
    await waitFor(() => appHook.accepted().length === 1 && jobHook.ofType("job.completed").length === 1);
    await waitFor(() => jobHook.accepted().length === 3, { what: "started, progress and completed" });
    expect(appHook.accepted()[0]!.body.data).toMatchObject({ jobId: id, userId, externalUserId: "end-1" });
    expect(jobHook.received.every((x) => x.verified)).toBe(true);
    expect(strangerHook.received).toEqual([]);

    const own = await json<{ deliveries: Delivery[] }>(
      await server.api(`/api/webhooks/deliveries?jobId=${id}`, { key: app.key }),
      200,
    );
    expect(own.deliveries.map((d) => d.eventType).sort()).toEqual([
      "job.completed",
      "job.completed",
      "job.progress",
      "job.started",
    ]);
    expect(own.deliveries.filter((d) => d.endpointId === null)).toHaveLength(3);
  });

  test("a generation's webhookUrl gets its events, signed with the caller's secret", async () => {
    const u = await createUser(server);
    const r = receiver();
    const { secret } = await json<{ secret: string }>(
      await server.api("/api/webhooks/secret", { key: u.key }),
      200,
    );
    r.secrets.push(secret);
    const res = await server.api("/api/jobs/generate-image", {
      method: "POST",
      key: u.key,
      json: { prompt: "a red fox in the snow", size: "256x256", webhookUrl: r.url },
    });
    const { jobId } = await json<{ jobId: string }>(res, 202);
    await waitFor(() => r.ofType("job.completed").length === 1, { timeoutMs: 15_000, what: "job.completed" });
    expect(r.received.every((x) => x.verified)).toBe(true);
    expect(r.ofType("job.completed")[0]!.body.data).toMatchObject({
      jobId,
      jobType: "generate",
      userId: u.id,
    });
    expect(r.ofType("job.started")).toHaveLength(1);
  });

  test("retries: 500, then 429 with Retry-After, then 200 — one webhook-id, accepted exactly once, on schedule", async () => {
    const u = await createUser(server);
    const r = receiver();
    const ep = await register(server, u.key, r);
    r.script = [
      () => new Response("down", { status: 500 }),
      () => new Response("slow down", { status: 429, headers: { "retry-after": "1" } }),
    ];
    const { deliveryId } = await json<{ deliveryId: string }>(
      await server.api(`/api/webhooks/${ep.id}/test`, { method: "POST", key: u.key }),
      202,
    );
    await waitFor(() => r.accepted().length === 1, { timeoutMs: 8000, what: "the third attempt" });

    expect(r.received.map((x) => x.status)).toEqual([500, 429, 200]);
    expect(new Set(r.received.map((x) => x.id))).toEqual(new Set([deliveryId]));
    expect(r.acceptedIds.get(deliveryId)).toBe(1);
    expect(r.accepted()[0]!.type).toBe("webhook.test");
    const [a, b, c] = r.received.map((x) => x.at) as [number, number, number];
    // First retry: 5 s × 0.02 = 100 ms ±10%; second: the receiver's Retry-After (1 s), not the schedule.
    expect(b - a).toBeGreaterThanOrEqual(85);
    expect(b - a).toBeLessThan(800);
    expect(c - b).toBeGreaterThanOrEqual(950);
    expect(c - b).toBeLessThan(2000);

    await waitFor(async () => (await deliveries(server, u.key, ep.id))[0]?.status === "delivered");
    const [d] = await deliveries(server, u.key, ep.id);
    expect(d).toMatchObject({ id: deliveryId, eventType: "webhook.test", attempts: 3, lastStatusCode: 200 });
    expect((await endpoint(server, u.key, ep.id)).failureCount).toBe(0);
  });

  test("410 Gone disables the endpoint: no more deliveries to it", async () => {
    const u = await createUser(server);
    const r = receiver();
    const ep = await register(server, u.key, r);
    r.fallback = () => new Response("gone", { status: 410 });
    await server.api(`/api/webhooks/${ep.id}/test`, { method: "POST", key: u.key });
    await waitFor(async () => (await endpoint(server, u.key, ep.id)).status === "disabled");
    expect((await endpoint(server, u.key, ep.id)).disabledReason).toContain("410");
    await waitFor(async () => (await deliveries(server, u.key, ep.id))[0]?.status === "failed");

    const id = (await server.ctx.queue.enqueue("work", { steps: 1 }, { ownerId: u.id })).id;
    await waitFor(async () => (await server.ctx.queue.get(id))?.status === "completed");
    await Bun.sleep(200);
    expect(r.received).toHaveLength(1);
    expect(await deliveries(server, u.key, ep.id)).toHaveLength(1);
    const test2 = await server.api(`/api/webhooks/${ep.id}/test`, { method: "POST", key: u.key });
    expect(test2.status).toBe(422);
  });

  test("redirects are never followed: a 3xx is a failed attempt and its target is never called", async () => {
    const u = await createUser(server);
    const r = receiver();
    const internal = receiver();
    const ep = await register(server, u.key, r);
    const targets = [internal.url, "http://169.254.169.254/latest/meta-data/", "http://[::1]:9/"];
    r.fallback = () =>
      new Response(null, { status: 302, headers: { location: targets[r.received.length % 3]! } });
    for (let i = 0; i < 3; i++)
      await server.api(`/api/webhooks/${ep.id}/test`, { method: "POST", key: u.key });
    await waitFor(async () => (await deliveries(server, u.key, ep.id)).every((d) => d.attempts >= 1), {
      what: "three redirected attempts",
    });
    expect(r.received.length).toBeGreaterThanOrEqual(3);
    expect(internal.received).toEqual([]);
    for (const d of await deliveries(server, u.key, ep.id)) {
      expect(d).toMatchObject({ status: "pending", lastStatusCode: 302 });
      expect(d.lastError).toContain("redirect");
    }
    await server.api(`/api/webhooks/${ep.id}`, { method: "DELETE", key: u.key });
  });

  test("a slow receiver times out (a recorded, retried failure)", async () => {
    const u = await createUser(server);
    const r = receiver();
    const ep = await register(server, u.key, r);
    r.script = [
      async () => {
        await Bun.sleep(1500);
        return new Response("late");
      },
    ];
    await server.api(`/api/webhooks/${ep.id}/test`, { method: "POST", key: u.key });
    await waitFor(async () => (await deliveries(server, u.key, ep.id))[0]?.status === "delivered", {
      timeoutMs: 8000,
    });
    const [d] = await deliveries(server, u.key, ep.id);
    expect(d!.attempts).toBe(2);
    expect(r.accepted()).toHaveLength(1);
  });

  test("webhook.deliver jobs never produce webhooks themselves", async () => {
    await Bun.sleep(100);
    const db = server.ctx.db.$client;
    expect(deliverJobs(server).length).toBeGreaterThan(10);
    const aboutDeliveries = db
      .query(
        `SELECT count(*) AS n FROM webhook_deliveries d JOIN jobs j ON j.id = d.job_id
         WHERE j.type = 'webhook.deliver' OR d.payload LIKE '%"jobType":"webhook.deliver"%'`,
      )
      .get() as { n: number };
    expect(aboutDeliveries.n).toBe(0);
    // Delivery jobs belong to no one, so they never show up in a user's room or job list either.
    const owned = db.query(
      "SELECT count(*) AS n FROM jobs WHERE type = 'webhook.deliver' AND owner_id IS NOT NULL",
    );
    expect((owned.get() as { n: number }).n).toBe(0);
  });

  test("deleting an endpoint drops its pending deliveries; their jobs end quietly", async () => {
    const u = await createUser(server);
    const r = receiver();
    const ep = await register(server, u.key, r);
    r.fallback = () => new Response("down", { status: 500 });
    const sent = await server.api(`/api/webhooks/${ep.id}/test`, { method: "POST", key: u.key });
    const { deliveryId } = await json<{ deliveryId: string }>(sent, 202);
    await waitFor(() => r.received.length === 1);
    expect((await server.api(`/api/webhooks/${ep.id}`, { method: "DELETE", key: u.key })).status).toBe(204);
    const job = () => deliverJobs(server).find((j) => JSON.parse(j.input).deliveryId === deliveryId)!;
    await waitFor(() => job().status === "completed", { what: "the orphaned delivery job to end" });
    expect(r.received).toHaveLength(1);
    expect(await server.ctx.webhooks.store.delivery(deliveryId)).toBeNull();
  });
});

describe("webhooks: giving up and failing endpoints", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({
      env: {
        ALLOW_PRIVATE_URLS: "true",
        WEBHOOK_RETRY_SCHEDULE: "50ms,50ms",
        WEBHOOK_FAILING_AFTER_MS: "100",
      },
    });
  });
  afterAll(() => server.close());

  test("after the schedule is spent the delivery fails; an endpoint failing long enough shows as failing", async () => {
    const r = receiver();
    const ep = await register(server, ADMIN_KEY, r);
    r.fallback = () => new Response("down", { status: 503 });
    await server.api(`/api/webhooks/${ep.id}/test`, { method: "POST" });
    await waitFor(async () => (await deliveries(server, ADMIN_KEY, ep.id))[0]?.status === "failed");
    const [d] = await deliveries(server, ADMIN_KEY, ep.id);
    expect(d).toMatchObject({ attempts: 3, lastStatusCode: 503, nextAttemptAt: null });
    expect(r.received).toHaveLength(3);
    const job = deliverJobs(server)[0]!;
    expect(job.status).toBe("failed");
    expect(JSON.parse(job.error!).code).toBe("delivery_exhausted");

    await waitFor(async () => (await endpoint(server, ADMIN_KEY, ep.id)).status === "failing");
    expect((await endpoint(server, ADMIN_KEY, ep.id)).failureCount).toBe(3);
    r.fallback = () => new Response("ok");
    await server.api(`/api/webhooks/${ep.id}/test`, { method: "POST" });
    await waitFor(async () => (await endpoint(server, ADMIN_KEY, ep.id)).status === "active");
    expect((await endpoint(server, ADMIN_KEY, ep.id)).failureCount).toBe(0);
  });

  test("the per-job secret rotates; the previous one still verifies for a day", async () => {
    const { secret: before } = await json<{ secret: string }>(await server.api("/api/webhooks/secret"), 200);
    const { secret: after } = await json<{ secret: string }>(
      await server.api("/api/webhooks/secret/rotate", { method: "POST" }),
      200,
    );
    expect(after).not.toBe(before);
    const oldOnly = receiver();
    const newOnly = receiver();
    oldOnly.secrets.push(before);
    newOnly.secrets.push(after);
    const admin = (await server.ctx.auth.bootstrapAdmin()).admin;
    server.ctx.queue.define(jobTypes[0]!);
    for (const r of [oldOnly, newOnly])
      await server.ctx.queue.enqueue("work", { steps: 1 }, { ownerId: admin.id, webhookUrl: r.url });
    await waitFor(
      () => oldOnly.ofType("job.completed").length === 1 && newOnly.ofType("job.completed").length === 1,
    );
    expect(oldOnly.ofType("job.completed")[0]!.signature.split(" ")).toHaveLength(2);
  });
});
