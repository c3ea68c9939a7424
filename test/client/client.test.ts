/**
 * `easel/client` against a real Easel server: imported by its package name, as an app would; generations
 * waited for over a WebSocket and by polling (when there is no socket, or it fails), abort and timeout,
 * subscriptions, cards, instant claims answered as values, and webhooks verified by a real receiver. The
 * client's bundle is built to show no server code comes with it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  createClient,
  EaselError,
  type Progress,
  type ServerFrame,
  verifyWebhook,
  WebhookVerificationError,
} from "easel/client";
import { createRecipe, createUser, expectStatus, seedReadyBacklog } from "../fixtures/backlog";
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from "../helpers";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    env: {
      ALLOW_PRIVATE_URLS: "true",
      RENDER_WORKERS: "1",
      BACKLOG_CRON: "0 0 1 1 *",
      ITEM_MAX_ATTEMPTS: "1",
    },
  });
});
afterAll(() => server.close());

const admin = () => createClient({ url: server.url, key: ADMIN_KEY });

describe("generations", () => {
  test("generate, then waitForJob over the WebSocket: progress, then the job with its request and images", async () => {
    const client = admin();
    const queued = await client.generate({ prompt: "a lighthouse", size: "128x128", metadata: { page: 3 } });
    expect(queued.status).toBe("queued");
    const progress: Progress[] = [];
    const job = await client.waitForJob(queued.jobId, {
      timeoutMs: 20_000,
      onProgress: (p) => progress.push(p),
    });
    expect(job.status).toBe("completed");
    expect(job.request).toMatchObject({ prompt: "a lighthouse", size: "128x128" });
    expect(job.metadata).toEqual({ page: 3 });
    expect(job.assets).toHaveLength(1);
    expect((await fetch(job.assets![0]!.url)).status).toBe(200);
  });

  test("generateBatch: each item's image found by the id the app gave it", async () => {
    const client = admin();
    const { jobId, totalItems } = await client.generateBatch(
      [
        { id: "cover", prompt: "a book cover" },
        { id: "page-1", prompt: "a first page" },
      ],
      { size: "128x128" },
    );
    expect(totalItems).toBe(2);
    const job = await client.waitForJob(jobId, { timeoutMs: 20_000 });
    expect(job.items?.map((i) => [i.id, i.assets.length])).toEqual([
      ["cover", 1],
      ["page-1", 1],
    ]);
  });

  test("without a WebSocket, waitForJob polls", async () => {
    const client = createClient({ url: server.url, key: ADMIN_KEY, WebSocket: false, pollIntervalMs: 50 });
    const { jobId } = await client.generate({ prompt: "polled", size: "128x128" });
    expect((await client.waitForJob(jobId, { timeoutMs: 20_000 })).status).toBe("completed");
  });

  test("when the socket cannot connect, waitForJob falls back to polling", async () => {
    const dead = Bun.serve({ port: 0, fetch: () => new Response("no sockets here", { status: 503 }) });
    const deadPort = dead.port;
    // A real WebSocket whose upgrade is refused by a server that speaks no WebSocket.
    class RefusedSocket extends WebSocket {
      constructor(_url: string | URL) {
        super(`ws://127.0.0.1:${deadPort}/ws`);
      }
    }
    try {
      const client = createClient({
        url: server.url,
        key: ADMIN_KEY,
        WebSocket: RefusedSocket,
        pollIntervalMs: 50,
      });
      const { jobId } = await client.generate({ prompt: "fallback", size: "128x128" });
      expect((await client.waitForJob(jobId, { timeoutMs: 20_000 })).status).toBe("completed");
    } finally {
      dead.stop(true);
    }
  });

  test("a failed job resolves with its status and error; an unknown job is an EaselError 404", async () => {
    const client = admin();
    const { jobId } = await client.generate({ prompt: "[fail] no", size: "128x128" });
    const job = await client.waitForJob(jobId, { timeoutMs: 20_000 });
    expect(job.status).toBe("failed");
    expect(job.error?.code).toBe("provider_unavailable");
    const missing = await client.waitForJob("0190a000-0000-7000-8000-000000000000").catch((e) => e);
    expect(missing).toBeInstanceOf(EaselError);
    expect(missing).toMatchObject({ status: 404, code: "not_found" });
  });

  test("waitForJob gives up at its timeout and stops when aborted; the job itself runs on", async () => {
    const client = admin();
    const { jobId } = await client.generate({ prompt: "[slow] take your time", size: "128x128" });
    const timedOut = await client.waitForJob(jobId, { timeoutMs: 200 }).catch((e) => e);
    expect(timedOut).toMatchObject({ name: "EaselError", code: "timeout" });

    const ac = new AbortController();
    const waiting = client.waitForJob(jobId, { signal: ac.signal }).catch((e) => e);
    ac.abort(new Error("user left the page"));
    expect(((await waiting) as Error).message).toBe("user left the page");
    expect((await client.getStatus(jobId)).status).not.toBe("cancelled");
  });

  test("an idempotency key makes a repeated generate answer with the same job", async () => {
    const client = admin();
    const key = `gen-${Bun.randomUUIDv7()}`;
    const first = await client.generate({ prompt: "once", size: "128x128" }, { idempotencyKey: key });
    const again = await client.generate({ prompt: "once", size: "128x128" }, { idempotencyKey: key });
    expect(again.jobId).toBe(first.jobId);
  });

  test("refusals are EaselErrors with the server's code and message", async () => {
    const err = await admin()
      .generate({ prompt: "x", sizee: "256x256" } as never)
      .catch((e) => e);
    expect(err).toBeInstanceOf(EaselError);
    expect(err).toMatchObject({ status: 400, code: "unknown_field" });
    expect(err.message).toContain("did you mean `size`?");
  });
});

describe("subscriptions and cards", () => {
  test("subscribe gets the caller's own job frames, terminal ones with their outcome", async () => {
    const user = await createUser(server.api, { unlimited: true });
    const client = createClient({ url: server.url, key: user.key });
    const frames: ServerFrame[] = [];
    const sub = client.subscribe((f) => frames.push(f));
    try {
      await sub.ready;
      const { jobId } = await client.generate({ prompt: "mine", size: "128x128", metadata: { slot: "a" } });
      const done = await waitFor(() => frames.find((f) => f.type === "job_completed" && f.jobId === jobId), {
        timeoutMs: 20_000,
        what: "job_completed",
      });
      expect(done).toMatchObject({ metadata: { slot: "a" }, failedItems: [] });
      expect((done as { assets: unknown[] }).assets).toHaveLength(1);
    } finally {
      sub.close();
    }
  });

  test("subscribe reconnects after the socket drops and follows its jobs again", async () => {
    const sockets: WebSocket[] = [];
    class Tracked extends WebSocket {
      // The client passes its API key as a header in the second argument (never in the URL).
      // biome-ignore lint/suspicious/noExplicitAny: forwards either overload of Bun's WebSocket constructor
      constructor(url: string | URL, init?: any) {
        super(url, init);
        sockets.push(this);
      }
    }
    const client = createClient({ url: server.url, key: ADMIN_KEY, WebSocket: Tracked });
    const user = await createUser(server.api, { unlimited: true });
    const theirs = createClient({ url: server.url, key: user.key });
    const frames: ServerFrame[] = [];
    const errors: Error[] = [];
    const sub = client.subscribe((f) => frames.push(f), { reconnectMs: 50, onError: (e) => errors.push(e) });
    try {
      await sub.ready;
      const { jobId } = await theirs.generate({
        prompt: "[slow] followed across a reconnect",
        size: "128x128",
      });
      sub.add(jobId);
      await waitFor(() => frames.find((f) => f.type === "subscribed" && f.jobId === jobId), {
        what: "subscribed",
      });
      sockets[0]!.close();
      await waitFor(
        () => sockets.length === 2 && frames.filter((f) => f.type === "connection_confirmed").length === 2,
        {
          what: "the reconnect",
        },
      );
      await sub.ready;
      expect(errors.some((e) => e.message.includes("reconnecting"))).toBe(true);
      // Subscribed again on the new socket: the end of the (another user's) job still arrives.
      const done = await waitFor(() => frames.find((f) => f.type === "job_completed" && f.jobId === jobId), {
        timeoutMs: 20_000,
        what: "job_completed after the reconnect",
      });
      expect(done).toMatchObject({ jobId });
    } finally {
      sub.close();
    }
  });

  test("createCard renders at once; updateCard bumps the version and a card_rendered frame follows", async () => {
    const client = admin();
    const poll = {
      question: "Tea or coffee?",
      creator: { name: "Ada" },
      options: [
        { label: "Tea", votes: 1 },
        { label: "Coffee", votes: 0 },
      ],
    };
    const card = await client.createCard("poll", poll);
    expect(card.status).toBe("rendered");
    const frames: ServerFrame[] = [];
    const sub = client.subscribe((f) => frames.push(f));
    try {
      await sub.ready;
      const updated = await client.updateCard(card.id, {
        ...poll,
        options: [{ label: "Tea", votes: 2 }, poll.options[1]!],
      });
      expect(updated.version).toBe(card.version + 1);
      await waitFor(
        () =>
          frames.find(
            (f) => f.type === "card_rendered" && f.cardId === card.id && f.version === updated.version,
          ),
        {
          timeoutMs: 20_000,
          what: "card_rendered",
        },
      );
    } finally {
      sub.close();
    }
  });
});

describe("instant claims", () => {
  test("an empty backlog or too few credits is an answer, not an exception; a ready image is claimed", async () => {
    await createRecipe(server.api, { id: "client-fox", backlogMin: 0, creditCost: 4 });
    const user = await createUser(server.api, { credits: 5 });
    const client = createClient({ url: server.url, key: user.key });

    expect(await client.claimInstant("client-fox")).toMatchObject({
      ok: false,
      fallbackToModal: true,
      error: { code: "no_instant_available" },
    });
    await seedReadyBacklog(server.ctx, "client-fox", 2);
    const claim = await client.claimInstant("client-fox");
    if (!claim.ok) throw new Error(`not claimed: ${JSON.stringify(claim)}`);
    expect(claim.recipeId).toBe("client-fox");
    expect(claim.variables).toEqual({ color: "red" });
    expect(claim.creditsRemaining).toBe(1);
    expect(await client.claimInstant("client-fox")).toMatchObject({
      ok: false,
      fallbackToModal: false,
      error: { code: "insufficient_credits", message: "this needs 4 credits; 1 available" },
    });

    const unknown = await client.claimInstant("no-such-recipe").catch((e) => e);
    expect(unknown).toMatchObject({ name: "EaselError", status: 404 });
  });
});

describe("verifyWebhook", () => {
  test("a receiver verifies Easel's real deliveries and refuses tampered or foreign ones", async () => {
    const { secret } = await expectStatus<{ secret: string }>(await server.api("/api/webhooks/secret"), 200);
    const outcomes: { ok: boolean; type?: string; jobId?: unknown; error?: string }[] = [];
    const receiver = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      async fetch(req) {
        const body = await req.text();
        try {
          const event = await verifyWebhook(secret, body, req.headers);
          outcomes.push({ ok: true, type: event.type, jobId: event.data.jobId });
          return new Response("ok");
        } catch (err) {
          outcomes.push({ ok: false, error: (err as Error).message });
          return new Response("bad signature", { status: 401 });
        }
      },
    });
    try {
      const client = admin();
      const { jobId } = await client.generate({
        prompt: "hooked",
        size: "128x128",
        webhookUrl: `http://127.0.0.1:${receiver.port}/hook`,
      });
      await waitFor(() => outcomes.find((o) => o.type === "job.completed"), {
        timeoutMs: 20_000,
        what: "the verified job.completed webhook",
      });
      expect(outcomes.filter((o) => !o.ok)).toEqual([]);
      expect(outcomes.find((o) => o.type === "job.completed")?.jobId).toBe(jobId);
    } finally {
      receiver.stop(true);
    }

    // A delivery as Easel signs it, then altered: each change is caught.
    const id = "msg_1";
    const timestamp = String(Math.floor(Date.now() / 1000));
    const body = JSON.stringify({
      type: "job.completed",
      timestamp: new Date().toISOString(),
      data: { jobId: "j" },
    });
    const key = await crypto.subtle.importKey(
      "raw",
      Buffer.from(secret.slice(6), "base64"),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    const sig = Buffer.from(
      await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`${id}.${timestamp}.${body}`)),
    ).toString("base64");
    const headers = { "webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": `v1,${sig}` };
    expect((await verifyWebhook(secret, body, headers)).data.jobId).toBe("j");
    // Rotation: the current secret among several still verifies.
    expect((await verifyWebhook(["whsec_AAAA", secret], body, headers)).type).toBe("job.completed");
    const refused = (p: Promise<unknown>) =>
      p.then(
        () => "accepted",
        (e) => e instanceof WebhookVerificationError && "refused",
      );
    expect(await refused(verifyWebhook(secret, body.replace('"j"', '"k"'), headers))).toBe("refused");
    expect(await refused(verifyWebhook("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", body, headers))).toBe(
      "refused",
    );
    expect(
      await refused(
        verifyWebhook(secret, body, { ...headers, "webhook-timestamp": String(Number(timestamp) - 3600) }),
      ),
    ).toBe("refused");
    expect(await refused(verifyWebhook(secret, body, { "webhook-id": id }))).toBe("refused");
  });
});

test("the client's bundle carries no server code", async () => {
  const out = await Bun.build({
    entrypoints: [`${import.meta.dir}/../../src/client/index.ts`],
    target: "browser",
  });
  expect(out.success).toBe(true);
  const code = await out.outputs[0]!.text();
  for (const serverOnly of ["bun:sqlite", "drizzle", "new Elysia", "sharp", "satori", "createApp"]) {
    expect(code).not.toContain(serverOnly);
  }
  // Eden and this client only: a few KB, not a server.
  expect(code.length).toBeLessThan(40_000);
});
