import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { z } from "zod";
import { Metrics } from "../src/modules/metrics/service";
import { createProviderRegistry } from "../src/providers/registry";
import type { Provider } from "../src/providers/types";
import { defineJob, RetryableError, UnrecoverableError } from "../src/queue";
import { ADMIN_KEY, startTestServer, storeOf, type TestServer, waitFor } from "./helpers";

type Sample = { name: string; labels: Record<string, string>; value: number };

/** Parses Prometheus text exposition into samples (enough of the format to check what we emit). */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    const value = Number(m[3]);
    if (Number.isNaN(value) && m[3] !== "NaN") throw new Error(`bad value in: ${line}`);
    out.push({ name: m[1]!, labels, value });
  }
  return out;
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    ?.value;
}

describe("GET /metrics", () => {
  let server: TestServer;
  const scrape = async () => {
    const res = await server.api("/metrics", { key: null });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    return parse(await res.text());
  };

  beforeAll(async () => {
    server = await startTestServer({
      jobs: [
        defineJob({
          type: "flaky",
          input: z.object({}),
          maxAttempts: 1,
          run: async () => {
            throw new UnrecoverableError("nope", { code: "flaky_failed" });
          },
        }),
      ],
    });
  });
  afterAll(() => server.close());

  test("counts jobs by status and type at scrape, with durations and waits from the queue", async () => {
    const res = await server.api("/api/jobs/generate-image", {
      method: "POST",
      json: { prompt: "a lighthouse", provider: "placeholder" },
    });
    expect(res.status).toBe(202);
    const { jobId } = (await res.json()) as { jobId: string };
    const failed = (await server.ctx.queue.enqueue("flaky", {})).id;
    const delayed = (await server.ctx.queue.enqueue("flaky", {}, { delayMs: 3_600_000 })).id;
    await waitFor(
      async () =>
        (await server.ctx.queue.get(jobId))?.status === "completed" &&
        (await server.ctx.queue.get(failed))?.status === "failed",
      { what: "jobs to finish" },
    );
    expect((await server.ctx.queue.get(delayed))?.status).toBe("queued");

    const samples = await scrape();
    expect(value(samples, "easel_jobs", { type: "generate", status: "completed" })).toBe(1);
    expect(value(samples, "easel_jobs", { type: "flaky", status: "failed" })).toBe(1);
    expect(value(samples, "easel_jobs", { type: "flaky", status: "delayed" })).toBe(1);
    expect(value(samples, "easel_jobs", { type: "flaky", status: "waiting" })).toBe(0);
    expect(
      value(samples, "easel_job_duration_seconds_count", { type: "generate", status: "completed" }),
    ).toBe(1);
    expect(value(samples, "easel_job_duration_seconds_count", { type: "flaky", status: "failed" })).toBe(1);
    expect(value(samples, "easel_job_wait_seconds_count", { type: "generate" })).toBe(1);
    expect(value(samples, "easel_job_item_duration_seconds_count", { type: "generate", class: "ok" })).toBe(
      1,
    );
    expect(value(samples, "easel_provider_requests_total", { provider: "placeholder", class: "ok" })).toBe(1);
    expect(value(samples, "easel_provider_request_duration_seconds_count", { provider: "placeholder" })).toBe(
      1,
    );
    const job = (await server.ctx.queue.get(jobId))!;
    const sum = value(samples, "easel_job_duration_seconds_sum", { type: "generate", status: "completed" })!;
    expect(sum).toBeCloseTo((job.finishedAt! - job.startedAt!) / 1000, 3);

    // Counted at scrape: the delayed job's cancellation shows in the next one.
    await server.ctx.queue.cancel(delayed);
    const next = await scrape();
    expect(value(next, "easel_jobs", { type: "flaky", status: "delayed" })).toBe(0);
    expect(value(next, "easel_jobs", { type: "flaky", status: "cancelled" })).toBe(1);
  });

  test("jobs that ended in the last complete minute come from the rollup", async () => {
    // A job cancelled "a minute ago" (the store takes the time it is given): the trigger files it under
    // that minute. Retried if the clock crosses into the next minute between the cancel and the scrape.
    for (;;) {
      const minute = Math.floor(Date.now() / 60_000) - 1;
      const before = await scrape();
      const had =
        value(before, "easel_jobs_finished_last_minute", { type: "flaky", status: "cancelled" }) ?? 0;
      const { id } = await server.ctx.queue.enqueue("flaky", {}, { delayMs: 3_600_000 });
      expect(storeOf(server.ctx.queue).cancel(id, minute * 60_000 + 30_000)?.status).toBe("cancelled");
      const after = await scrape();
      if (Math.floor(Date.now() / 60_000) - 1 !== minute) continue;
      expect(value(after, "easel_jobs_finished_last_minute", { type: "flaky", status: "cancelled" })).toBe(
        had + 1,
      );
      return;
    }
  });

  test("HTTP requests are labelled with the route pattern, never the raw path", async () => {
    for (let i = 0; i < 3; i++) await server.api(`/api/jobs/00000000-0000-7000-8000-00000000000${i}/status`);
    await server.api("/no/such/route");
    const samples = await scrape();
    expect(
      value(samples, "easel_http_requests_total", {
        method: "GET",
        route: "/api/jobs/:id/status",
        status: "404",
      }),
    ).toBe(3);
    expect(value(samples, "easel_http_requests_total", { route: "unmatched", status: "404" })).toBe(1);
    expect(samples.some((s) => s.labels.route?.includes("00000000"))).toBe(false);
    expect(
      value(samples, "easel_http_request_duration_seconds_count", { route: "/api/jobs/:id/status" }),
    ).toBe(3);
  });

  test("the SQLite size, worker slots, process and build series are there", async () => {
    const samples = await scrape();
    const db = value(samples, "easel_sqlite_bytes", { file: "db" })!;
    const wal = value(samples, "easel_sqlite_bytes", { file: "wal" })!;
    expect(db).toBeGreaterThanOrEqual(4096);
    // Recent commits live in the WAL until a checkpoint folds them in; together they hold the schema and rows.
    expect(db + wal).toBeGreaterThan(16 * 1024);
    const free = value(samples, "easel_worker_slots", { state: "free" })!;
    const busy = value(samples, "easel_worker_slots", { state: "busy" })!;
    expect(free + busy).toBe(server.ctx.config.WORKER_CONCURRENCY);
    expect(value(samples, "process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(value(samples, "process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(samples.find((s) => s.name === "easel_build_info")?.labels.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  test("card renders, WebSocket connections, webhook deliveries and credits are counted as they happen", async () => {
    const hooks: number[] = [];
    const receiver = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: () => {
        hooks.push(Date.now());
        return new Response(null, { status: hooks.length === 1 ? 500 : 204 });
      },
    });
    const s = await startTestServer({
      env: { ALLOW_PRIVATE_URLS: "true", WEBHOOK_RETRY_SCHEDULE: "1s,1s,1s", RENDER_WORKERS: "1" },
    });
    try {
      const scrapeS = async () => parse(await (await s.api("/metrics", { key: null })).text());
      // A card: rendered before the create call answers.
      const card = await s.api("/api/cards", {
        method: "POST",
        json: { template: "og", data: { title: "Counted" } },
      });
      expect(card.status).toBe(201);
      // Two sockets open, one closed again.
      const url = `${s.url.replace(/^http/, "ws")}/ws`;
      // Bun's WebSocket takes headers as a second argument: API keys are not accepted as ?token=.
      const open = () =>
        new (WebSocket as unknown as new (u: string, o: object) => WebSocket)(url, {
          headers: { authorization: `Bearer ${ADMIN_KEY}` },
        });
      const sockets = [open(), open()];
      await Promise.all(
        sockets.map((ws) => new Promise((r) => ws.addEventListener("message", r, { once: true }))),
      );
      expect(value(await scrapeS(), "easel_ws_connections")).toBe(2);
      sockets[1]!.close();
      await waitFor(async () => value(await scrapeS(), "easel_ws_connections") === 1, {
        what: "one socket left",
      });
      // Credits: a grant, then a generation charged for one image.
      const user = (await (
        await s.api("/api/users", { method: "POST", json: { name: "payer", role: "user" } })
      ).json()) as { user: { id: string }; key: string };
      await s.api(`/api/users/${user.user.id}/credits`, { method: "POST", json: { amount: 5 } });
      // A webhook endpoint for the user: its first delivery gets a 500, the retry a 204.
      await s.api("/api/webhooks", {
        method: "POST",
        key: user.key,
        json: { url: `http://127.0.0.1:${receiver.port}/hook`, events: ["job.completed"] },
      });
      const gen = await s.api("/api/jobs/generate-image", {
        method: "POST",
        key: user.key,
        json: { prompt: "a counted fox", size: "256x256" },
      });
      expect(gen.status).toBe(202);
      await waitFor(() => hooks.length === 2, { timeoutMs: 10_000, what: "the delivery and its retry" });
      const samples = await waitFor(
        async () => {
          const now = await scrapeS();
          return value(now, "easel_webhook_deliveries_total", { outcome: "delivered" }) === 1 ? now : null;
        },
        { what: "the delivery to be counted" },
      );
      expect(value(samples, "easel_webhook_deliveries_total", { outcome: "retried" })).toBe(1);
      expect(value(samples, "easel_card_render_duration_seconds_count")).toBe(1);
      expect(value(samples, "easel_credits_total", { kind: "grant" })).toBe(5);
      expect(value(samples, "easel_credits_total", { kind: "charge" })).toBe(1);
      sockets[0]!.close();
    } finally {
      await s.close();
      await receiver.stop(true);
    }
  }, 30_000);
});

describe("METRICS_TOKEN", () => {
  test("when set, /metrics needs it as a bearer token", async () => {
    const server = await startTestServer({ env: { METRICS_TOKEN: "scrape-me-please" } });
    try {
      expect((await server.api("/metrics", { key: null })).status).toBe(401);
      expect((await server.api("/metrics", { key: "wrong-token" })).status).toBe(401);
      const ok = await server.api("/metrics", { key: "scrape-me-please" });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toContain("easel_jobs");
    } finally {
      await server.close();
    }
  });
});

describe("provider instrumentation", () => {
  const provider = (name: string, behave: () => Promise<void>): Provider => ({
    info: {
      name,
      defaultModel: "m",
      models: ["m"],
      supportsEdits: false,
      limits: { concurrency: 4, rpm: 0 },
    },
    generate: async () => {
      await behave();
      return [{ bytes: new Uint8Array([1]), mime: "image/png" }];
    },
  });

  test("counts calls by provider and failure class, through generate() and get()", async () => {
    const metrics = new Metrics();
    const registry = createProviderRegistry({
      providers: [
        provider("steady", async () => {}),
        provider("limited", async () => {
          throw new RetryableError("slow down", { code: "provider_rate_limited" });
        }),
        provider("broken", async () => {
          throw new TypeError("boom");
        }),
      ],
      onCall: (call) => metrics.providerCall(call),
    });
    const ctx = { signal: new AbortController().signal };
    const req = { prompt: "p", size: "64x64", n: 1 };
    await registry.generate("steady", req, ctx);
    await registry.get("steady").generate(req, ctx);
    await expect(registry.generate("limited", req, ctx)).rejects.toThrow("slow down");
    await expect(registry.get("broken").generate(req, ctx)).rejects.toThrow("boom");
    expect(registry.has("steady")).toBe(true);
    expect(registry.list().map((p) => p.name)).toContain("limited");

    const samples = parse(await metrics.render());
    expect(value(samples, "easel_provider_requests_total", { provider: "steady", class: "ok" })).toBe(2);
    expect(
      value(samples, "easel_provider_requests_total", {
        provider: "limited",
        class: "provider_rate_limited",
      }),
    ).toBe(1);
    expect(
      value(samples, "easel_provider_errors_total", { provider: "limited", class: "provider_rate_limited" }),
    ).toBe(1);
    expect(value(samples, "easel_provider_errors_total", { provider: "broken", class: "internal" })).toBe(1);
    expect(value(samples, "easel_provider_errors_total", { provider: "steady" })).toBeUndefined();
  });
});
