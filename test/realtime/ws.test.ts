import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { Socket } from "node:net";
import { SignJWT } from "jose";
import { z } from "zod";
import { defineJob, UnrecoverableError } from "../../src/queue";
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from "../helpers";
import { rawUpgrade, WsClient } from "./client";

/** Jobs wait here until the test releases them, so subscriptions are in place before anything happens. */
const gates = new Map<string, PromiseWithResolvers<void>>();
const gate = (id: string) => {
  let g = gates.get(id);
  if (!g) {
    g = Promise.withResolvers<void>();
    gates.set(id, g);
  }
  return g;
};
const release = (id: string) => gate(id).resolve();

const jobTypes = [
  defineJob({
    type: "steps",
    input: z.object({ steps: z.number(), gapMs: z.number() }),
    run: async ({ job, input, progress }) => {
      await gate(job.id).promise;
      for (let i = 1; i <= input.steps; i++) {
        progress((i * 100) / input.steps, `step ${i}`);
        await Bun.sleep(input.gapMs);
      }
      return { steps: input.steps };
    },
  }),
  defineJob({
    type: "burst",
    input: z.object({}),
    run: async ({ job, progress }) => {
      await gate(job.id).promise;
      for (let i = 1; i <= 100; i++) {
        progress(i, `update ${i}`);
        if (i % 10 === 0) await Bun.sleep(5);
      }
      return { burst: true };
    },
  }),
  defineJob({
    type: "boom",
    input: z.object({}),
    maxAttempts: 1,
    run: async () => {
      throw new UnrecoverableError("it broke", { code: "boom" });
    },
  }),
];

let server: TestServer;
const clients: WsClient[] = [];
const sockets: Socket[] = [];

beforeAll(async () => {
  server = await startTestServer({ jobs: jobTypes });
});
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  for (const s of sockets.splice(0)) s.destroy();
});
afterAll(async () => {
  for (const g of gates.values()) g.resolve();
  await server.close();
});

const wsUrl = (s: TestServer, query = "") => `${s.url.replace(/^http/, "ws")}/ws${query}`;

/** Client tokens go in `?token=` as a browser sends them; API keys only ever in the Authorization header. */
async function connect(credential: string | null, s = server): Promise<WsClient> {
  const c = credential?.startsWith("esk_")
    ? await WsClient.connect(wsUrl(s), { headers: { authorization: `Bearer ${credential}` } })
    : await WsClient.connect(wsUrl(s, credential ? `?token=${encodeURIComponent(credential)}` : ""));
  clients.push(c);
  return c;
}

async function createUser(role: "user" | "app" = "user"): Promise<{ id: string; key: string }> {
  const res = await server.api("/api/users", {
    method: "POST",
    json: { name: `${role}-${Date.now()}`, role },
  });
  expect(res.status).toBe(201);
  const body = (await res.json()) as { user: { id: string }; key: string };
  return { id: body.user.id, key: body.key };
}

async function tokenFor(key: string, userId?: string): Promise<{ token: string; userId: string }> {
  const res = await server.api("/api/tokens", { method: "POST", key, json: userId ? { userId } : {} });
  expect(res.status).toBe(201);
  return (await res.json()) as { token: string; userId: string };
}

const enqueue = async (type: string, input: object, ownerId: string | null, delayMs?: number) =>
  (await server.ctx.queue.enqueue(type, input, { ownerId, delayMs })).id;

const jobFrames = (c: WsClient, jobId: string) => c.frames.filter((f) => f.jobId === jobId);

function terminal(id: string) {
  return waitFor(async () =>
    ["completed", "failed", "partial", "cancelled"].includes((await server.ctx.queue.get(id))!.status),
  );
}

describe("WebSocket /ws", () => {
  test("a connection is confirmed with its client id and user id", async () => {
    const u = await createUser();
    const c = await connect((await tokenFor(u.key)).token);
    const confirmed = c.ofType("connection_confirmed")[0]!;
    expect(confirmed.userId).toBe(u.id);
    expect(typeof confirmed.clientId).toBe("string");
    const other = await connect(u.key);
    expect(other.ofType("connection_confirmed")[0]!.clientId).not.toBe(confirmed.clientId);
  });

  test("subscribe_to_job: progress frames, then completion last, in order", async () => {
    const u = await createUser();
    const id = await enqueue("steps", { steps: 3, gapMs: 300 }, u.id);
    const admin = await connect(ADMIN_KEY);
    admin.send({ type: "subscribe_to_job", jobId: id });
    const ack = await admin.next("subscribed", (f) => f.jobId === id);
    expect(["queued", "active"]).toContain(ack.status as string);
    release(id);
    await admin.next("job_completed", (f) => f.jobId === id);

    const frames = jobFrames(admin, id).filter((f) => f.type !== "subscribed");
    expect(frames.map((f) => f.type)).toEqual([
      "job_progress",
      "job_progress",
      "job_progress",
      "job_completed",
    ]);
    expect(frames.slice(0, 3).map((f) => f.progress)).toEqual([33, 67, 100]);
    expect(frames[2]).toMatchObject({ message: "step 3", completedItems: null, totalItems: null });
    expect(frames[3]).toEqual({
      type: "job_completed",
      jobId: id,
      result: { steps: 3 },
      assets: [],
      failedItems: [],
      metadata: null,
    });
  });

  test("a user's room gets its own jobs' events and no one else's", async () => {
    const a = await createUser();
    const b = await createUser();
    const ca = await connect((await tokenFor(a.key)).token);
    const cb = await connect((await tokenFor(b.key)).token);
    const jobA = await enqueue("steps", { steps: 2, gapMs: 300 }, a.id);
    release(jobA);
    await ca.next("job_completed", (f) => f.jobId === jobA);
    expect(jobFrames(ca, jobA).map((f) => f.type)).toEqual(["job_progress", "job_progress", "job_completed"]);
    await cb.roundTrip();
    expect(cb.frames.filter((f) => f.jobId !== undefined)).toEqual([]);
  });

  test("another user's job (or one that does not exist) is an error frame; nothing leaks", async () => {
    const a = await createUser();
    const b = await createUser();
    const cb = await connect((await tokenFor(b.key)).token);
    const jobA = await enqueue("steps", { steps: 2, gapMs: 300 }, a.id);
    cb.send({ type: "subscribe_to_job", jobId: jobA });
    const denied = await cb.next("error");
    expect(denied).toMatchObject({ code: "not_found" });
    cb.send({ type: "subscribe_to_job", jobId: "no-such-job" });
    const missing = await cb.next("error", (f) => f !== denied);
    expect(missing.code).toBe("not_found");
    expect(String(missing.message).replace("no-such-job", "X")).toBe(
      String(denied.message).replace(jobA, "X"),
    );

    release(jobA);
    await terminal(jobA);
    await cb.roundTrip();
    expect(cb.frames.some((f) => f.jobId === jobA && f.type !== "error")).toBe(false);
  });

  test("admins may subscribe to any job; apps to their end users' jobs but not another app's", async () => {
    const app1 = await createUser("app");
    const app2 = await createUser("app");
    const endUser = await tokenFor(app1.key, "end-user-1");
    const id = await enqueue("steps", { steps: 1, gapMs: 0 }, endUser.userId, 60_000);
    const c1 = await connect(app1.key);
    const c2 = await connect(app2.key);
    c1.send({ type: "subscribe_to_job", jobId: id });
    c2.send({ type: "subscribe_to_job", jobId: id });
    expect((await c1.next("subscribed")).jobId).toBe(id);
    expect((await c2.next("error")).code).toBe("not_found");
    await server.ctx.queue.cancel(id);
    expect(await c1.next("job_cancelled")).toMatchObject({ jobId: id, error: { code: "cancelled" } });
  });

  test("unsubscribe_from_job stops a job's frames", async () => {
    const u = await createUser();
    const id = await enqueue("steps", { steps: 2, gapMs: 300 }, u.id);
    const admin = await connect(ADMIN_KEY);
    admin.send({ type: "subscribe_to_job", jobId: id });
    await admin.next("subscribed");
    admin.send({ type: "unsubscribe_from_job", jobId: id });
    await admin.next("unsubscribed");
    release(id);
    await terminal(id);
    await admin.roundTrip();
    expect(jobFrames(admin, id).map((f) => f.type)).toEqual(["subscribed", "unsubscribed"]);
  });

  test("bad JSON, unknown types and invalid messages get an error frame; the connection stays open", async () => {
    const c = await connect(ADMIN_KEY);
    c.send("{not json");
    c.send({ type: "launch_rockets" });
    c.send({ type: "subscribe_to_job" });
    c.send("[1,2]");
    await c.roundTrip();
    expect(c.ofType("error").map((f) => f.code)).toEqual([
      "invalid_json",
      "unknown_type",
      "invalid_message",
      "invalid_message",
    ]);
    expect(c.ofType("error").every((f) => typeof f.message === "string" && f.message.length > 0)).toBe(true);
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
  });

  test("missing, forged and expired credentials: closed with 4401 and a reason", async () => {
    const u = await createUser();
    const expired = await server.ctx.auth.issueToken(u.id, -60);
    const forged = await new SignJWT({ scope: "client" })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(u.id)
      .setIssuer("easel")
      .setIssuedAt()
      .setExpirationTime("1h")
      .sign(new TextEncoder().encode("not-the-server-secret-not-the-server-secret"));
    for (const credential of [null, expired.token, forged, "esk_not_a_real_key"]) {
      const c = await connect(credential);
      const closed = await c.closed;
      expect(closed.code).toBe(4401);
      expect(closed.reason).toContain("unauthorized");
      expect(c.frames).toEqual([]);
    }
  });

  test("the Authorization header works as well as ?token= (which takes client tokens only)", async () => {
    const u = await createUser();
    const c = await WsClient.connect(wsUrl(server), { headers: { authorization: `Bearer ${u.key}` } });
    clients.push(c);
    expect(c.ofType("connection_confirmed")[0]!.userId).toBe(u.id);
  });

  test("subscribing to a finished job sends its terminal event at once", async () => {
    const u = await createUser();
    const done = await enqueue("steps", { steps: 1, gapMs: 0 }, u.id);
    release(done);
    const failed = await enqueue("boom", {}, u.id);
    await terminal(done);
    await terminal(failed);
    const admin = await connect(ADMIN_KEY);
    admin.send({ type: "subscribe_to_job", jobId: done });
    admin.send({ type: "subscribe_to_job", jobId: failed });
    expect(await admin.next("job_completed")).toEqual({
      type: "job_completed",
      jobId: done,
      result: { steps: 1 },
      // A job without items or metadata: the outcome is there, empty.
      assets: [],
      failedItems: [],
      metadata: null,
    });
    const f = await admin.next("job_failed");
    expect(f).toMatchObject({ jobId: failed, error: { code: "boom", message: "it broke" } });
    expect(admin.ofType("subscribed").map((s) => s.status)).toEqual(["completed", "failed"]);
  });

  test("100 progress updates in ~50 ms become a few frames; the last value is right and completion follows", async () => {
    const u = await createUser();
    const id = await enqueue("burst", {}, u.id);
    const c = await connect((await tokenFor(u.key)).token);
    release(id);
    await c.next("job_completed", (f) => f.jobId === id);
    const frames = jobFrames(c, id);
    const progress = frames.filter((f) => f.type === "job_progress");
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress.length).toBeLessThanOrEqual(3);
    expect(progress.at(-1)).toMatchObject({ progress: 100, message: "update 100" });
    expect(frames.at(-1)!.type).toBe("job_completed");
    const values = progress.map((f) => f.progress as number);
    expect(values).toEqual([...values].sort((x, y) => x - y));
  });

  test("card:rendered reaches the owner's room only", async () => {
    const a = await createUser();
    const b = await createUser();
    const ca = await connect(a.key);
    const cb = await connect(b.key);
    server.ctx.cards.events.emit("card:rendered", {
      cardId: "card-1",
      ownerId: a.id,
      version: 3,
      imageUrl: "http://x/cards/card-1-3.png",
    });
    expect(await ca.next("card_rendered")).toEqual({
      type: "card_rendered",
      cardId: "card-1",
      imageUrl: "http://x/cards/card-1-3.png",
      version: 3,
    });
    await cb.roundTrip();
    expect(cb.ofType("card_rendered")).toEqual([]);
  });
});

describe("dead and slow connections", () => {
  test("a peer that never answers pings is terminated; a live one stays", async () => {
    const fast = await startTestServer({ env: { WS_PING_INTERVAL_MS: "150", WS_PING_TIMEOUT_MS: "150" } });
    try {
      const live = await connect(ADMIN_KEY, fast);
      const dead = await rawUpgrade(wsUrl(fast), { bearer: ADMIN_KEY });
      sockets.push(dead);
      const ended = new Promise<void>((resolve) => dead.once("close", () => resolve()));
      await waitFor(() => fast.ctx.realtime.stats().connections === 2);
      await ended;
      expect(fast.ctx.realtime.stats().connections).toBe(1);
      await Bun.sleep(400);
      expect(live.ws.readyState).toBe(WebSocket.OPEN);
      await live.roundTrip();
    } finally {
      await fast.close();
    }
  });

  test("a client that stops reading is disconnected once its backlog passes the limit", async () => {
    // Pings every 30 s (the default): only the backlog limit can drop the stalled client here.
    const small = await startTestServer({ env: { WS_MAX_BUFFERED_BYTES: "65536" } });
    try {
      const res = await small.api("/api/users", { method: "POST", json: { name: "slow", role: "user" } });
      const { user, key } = (await res.json()) as { user: { id: string }; key: string };
      const live = await connect(key, small);
      const stalled = await rawUpgrade(wsUrl(small), { pause: true, bearer: key });
      sockets.push(stalled);
      await waitFor(() => small.ctx.realtime.stats().connections === 2);
      const imageUrl = `http://x/${"y".repeat(16 * 1024)}.png`;
      for (let i = 0; i < 3000 && small.ctx.realtime.stats().connections === 2; i++) {
        small.ctx.cards.events.emit("card:rendered", {
          cardId: `c${i}`,
          ownerId: user.id,
          version: i,
          imageUrl,
        });
        if (i % 100 === 0) await Bun.sleep(1);
      }
      await waitFor(() => small.ctx.realtime.stats().connections === 1, {
        what: "the stalled client to be dropped",
      });
      await live.roundTrip();
      expect(live.ws.readyState).toBe(WebSocket.OPEN);
      expect(live.ofType("card_rendered").length).toBeGreaterThan(0);
    } finally {
      await small.close();
    }
  });
});
