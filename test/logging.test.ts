import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Writable } from "node:stream";
import { z } from "zod";
import { createLogger } from "../src/log";
import { requestIdFrom } from "../src/modules/ops/access";
import { defineJob, UnrecoverableError } from "../src/queue";
import { type Runtime, startRuntime } from "../src/runtime";
import { ADMIN_KEY, tempDir, testConfig, waitFor } from "./helpers";

type Line = Record<string, unknown> & { level: number; msg: string };

/** A log destination that keeps every line. */
function capture() {
  const text: string[] = [];
  return {
    text,
    stream: new Writable({
      write(chunk, _encoding, done) {
        text.push(String(chunk));
        done();
      },
    }),
    lines: (): Line[] => text.map((t) => JSON.parse(t) as Line),
  };
}

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("structured logs", () => {
  const logs = capture();
  const tmp = tempDir("easel-logging-");
  let rt: Runtime;
  const call = (path: string, init: RequestInit = {}) => fetch(`${rt.url}${path}`, init);
  const accessLines = () => logs.lines().filter((l) => l.msg === "request");

  beforeAll(async () => {
    rt = await startRuntime(testConfig(tmp.dir), {
      log: createLogger({ level: "debug", destination: logs.stream }),
      jobs: [
        defineJob({
          type: "doomed",
          input: z.object({ image: z.string() }),
          maxAttempts: 1,
          run: async () => {
            throw new UnrecoverableError("the provider refused", { code: "content_policy" });
          },
        }),
      ],
    });
  });
  afterAll(async () => {
    await rt.stop();
    tmp.cleanup();
  });

  test("every response carries a request id: the caller's when sane, else a new UUIDv7", async () => {
    const given = await call("/api/health/live", { headers: { "x-request-id": "trace-abc.123" } });
    expect(given.headers.get("x-request-id")).toBe("trace-abc.123");
    const fresh = await call("/api/health/live");
    expect(fresh.headers.get("x-request-id")).toMatch(UUID_V7);
    const hostile = await call("/api/health/live", { headers: { "x-request-id": 'a b"} {"level":60' } });
    expect(hostile.headers.get("x-request-id")).toMatch(UUID_V7);
    const missing = await call("/no/such/thing", { headers: { "x-request-id": "req-404" } });
    expect(missing.status).toBe(404);
    expect(missing.headers.get("x-request-id")).toBe("req-404");
    expect(requestIdFrom(new Headers({ "x-request-id": "x".repeat(129) }))).toMatch(UUID_V7);
  });

  test("one access line per request: method, route pattern, status, ms, requestId, userId", async () => {
    const admin = rt.ctx.auth.authenticate(ADMIN_KEY);
    const adminId = (await admin)!.user.id;
    const res = await call("/api/profile", {
      headers: { authorization: `Bearer ${ADMIN_KEY}`, "x-request-id": "req-profile" },
    });
    expect(res.status).toBe(200);
    const line = accessLines().find((l) => l.requestId === "req-profile")!;
    expect(line).toMatchObject({
      level: 30,
      method: "GET",
      route: "/api/profile",
      status: 200,
      userId: adminId,
    });
    expect(typeof line.ms).toBe("number");

    await call("/api/jobs/01999999-0000-7000-8000-000000000000/status?token=super-secret-token", {
      headers: { "x-request-id": "req-token" },
    });
    const tokenLine = accessLines().find((l) => l.requestId === "req-token")!;
    expect(tokenLine).toMatchObject({ route: "/api/jobs/:id/status", status: 401 });
    expect(tokenLine.userId).toBeUndefined();
    expect(logs.text.join("")).not.toContain("super-secret-token");
    expect(logs.text.join("")).not.toContain(ADMIN_KEY);
  });

  test("health probes and scrapes log at debug; failures at info", async () => {
    await call("/api/health", { headers: { "x-request-id": "req-probe" } });
    await call("/nope", { headers: { "x-request-id": "req-nope" } });
    const probe = accessLines().find((l) => l.requestId === "req-probe")!;
    expect(probe).toMatchObject({ level: 20, route: "/api/health", status: 200 });
    expect(accessLines().find((l) => l.requestId === "req-nope")).toMatchObject({
      level: 30,
      route: "unmatched",
      status: 404,
    });
  });

  test("a failed job logs a warning with its job id, owner and error code, never its input", async () => {
    const owner = await rt.ctx.users.create({ name: "log-owner", role: "user" });
    const { id } = await rt.ctx.queue.enqueue(
      "doomed",
      { image: "data:image/png;base64,SECRETBYTES" },
      { ownerId: owner.id },
    );
    await waitFor(() => logs.lines().find((l) => l.msg === "job failed" && l.jobId === id), {
      what: "job log",
    });
    const line = logs.lines().find((l) => l.msg === "job failed" && l.jobId === id)!;
    expect(line).toMatchObject({
      level: 40,
      type: "doomed",
      userId: owner.id,
      code: "content_policy",
      attempts: 1,
    });
    expect(logs.text.join("")).not.toContain("SECRETBYTES");
  });

  test("keys, tokens, secrets and image bytes are redacted wherever they are logged", () => {
    rt.ctx.log.info(
      {
        authorization: "Bearer esk_live_abc",
        headers: { authorization: "Bearer esk_live_def", cookie: "session=xyz" },
        key: "esk_live_ghi",
        provider: { apiKey: "sk-123", token: "hf_456", secret: "whsec_789" },
        request: { image: "iVBORw0KGgo", images: ["iVBORw0KGgo2"], b64_json: "iVBORw0KGgo3" },
      },
      "something to redact",
    );
    const line = logs.text.find((t) => t.includes("something to redact"))!;
    for (const secret of ["esk_live", "session=xyz", "sk-123", "hf_456", "whsec_789", "iVBORw0KGgo"]) {
      expect(line).not.toContain(secret);
    }
    expect(JSON.parse(line).provider).toEqual({
      apiKey: "[redacted]",
      token: "[redacted]",
      secret: "[redacted]",
    });
  });
});

describe("createLogger", () => {
  test("pretty output is readable lines, not JSON", () => {
    const logs = capture();
    const log = createLogger({ level: "info", pretty: true, destination: logs.stream });
    log.info({ jobId: "j1" }, "hello there");
    log.flush();
    const out = logs.text.join("");
    expect(out).toContain("hello there");
    expect(out).toContain("jobId");
    expect(() => JSON.parse(out)).toThrow();
  });

  test("LOG_LEVEL filters", () => {
    const logs = capture();
    const log = createLogger({ level: "warn", destination: logs.stream });
    log.info("quiet");
    log.warn("loud");
    expect(logs.lines().map((l) => l.msg)).toEqual(["loud"]);
  });
});
