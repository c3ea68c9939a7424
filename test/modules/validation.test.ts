import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { z } from "zod";
import { defineJob } from "../../src/queue";
import { ADMIN_KEY, startTestServer, type TestServer } from "../helpers";

const MAX_BODY_BYTES = 2048;
const TABLES = ["jobs", "job_items", "users", "api_keys", "idempotency_keys"] as const;
const JSON_TYPE = { "content-type": "application/json" };

type Caller = "admin" | "app" | "user" | "token" | "none";
type Case = {
  name: string;
  method?: string;
  path: string;
  as?: Caller;
  json?: unknown;
  /** A raw body (sent as JSON unless `headers` say otherwise). */
  body?: string;
  headers?: Record<string, string>;
  status: number;
  code: string;
};

const echo = defineJob({ type: "echo", input: z.object({ n: z.number() }), run: async ({ input }) => input });
const validJob = { type: "echo", input: { n: 1 } };
const padding = "x".repeat(MAX_BODY_BYTES);
const UNKNOWN_ID = "0190a000-0000-7000-8000-000000000000";

const enqueueCases: Case[] = [
  {
    name: "type missing",
    path: "/api/jobs",
    json: { input: { n: 1 } },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "type not a string",
    path: "/api/jobs",
    json: { type: 5, input: {} },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "type empty",
    path: "/api/jobs",
    json: { type: "", input: {} },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "type too long",
    path: "/api/jobs",
    json: { type: "t".repeat(65), input: {} },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "input missing",
    path: "/api/jobs",
    json: { type: "echo" },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "priority a string",
    path: "/api/jobs",
    json: { ...validJob, priority: "high" },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "priority a fraction",
    path: "/api/jobs",
    json: { ...validJob, priority: 1.5 },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "priority out of range",
    path: "/api/jobs",
    json: { ...validJob, priority: 5000 },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "delayMs negative",
    path: "/api/jobs",
    json: { ...validJob, delayMs: -1 },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "maxAttempts zero",
    path: "/api/jobs",
    json: { ...validJob, maxAttempts: 0 },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "timeoutMs too small",
    path: "/api/jobs",
    json: { ...validJob, timeoutMs: 50 },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "dedupeKey empty",
    path: "/api/jobs",
    json: { ...validJob, dedupeKey: "" },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "debounceMs a word",
    path: "/api/jobs",
    json: { ...validJob, debounceMs: "soon" },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "userId a number",
    path: "/api/jobs",
    json: { ...validJob, userId: 42 },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "items not an array",
    path: "/api/jobs",
    json: { ...validJob, items: "a" },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "items empty",
    path: "/api/jobs",
    json: { ...validJob, items: [] },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "item without id",
    path: "/api/jobs",
    json: { ...validJob, items: [{ input: {} }] },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "item id a number",
    path: "/api/jobs",
    json: { ...validJob, items: [{ id: 5, input: {} }] },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "unknown job type",
    path: "/api/jobs",
    json: { type: "no-such-type", input: {} },
    status: 422,
    code: "unknown_job_type",
  },
  {
    name: "input the type rejects",
    path: "/api/jobs",
    json: { type: "echo", input: { n: "one" } },
    status: 422,
    code: "invalid_job_input",
  },
  { name: "body null", path: "/api/jobs", json: null, status: 422, code: "validation_failed" },
  { name: "body an array", path: "/api/jobs", json: [validJob], status: 422, code: "validation_failed" },
  { name: "body a string", path: "/api/jobs", json: "echo", status: 422, code: "validation_failed" },
  { name: "body empty", path: "/api/jobs", body: "", status: 422, code: "validation_failed" },
  {
    name: "Idempotency-Key too long",
    path: "/api/jobs",
    json: validJob,
    headers: { "idempotency-key": "k".repeat(256) },
    status: 422,
    code: "invalid_idempotency_key",
  },
];

const userCases: Case[] = [
  { name: "empty object", path: "/api/users", json: {}, status: 422, code: "validation_failed" },
  {
    name: "name a number",
    path: "/api/users",
    json: { name: 5, role: "app" },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "name blank",
    path: "/api/users",
    json: { name: "   ", role: "app" },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "name too long",
    path: "/api/users",
    json: { name: "n".repeat(201), role: "app" },
    status: 422,
    code: "validation_failed",
  },
  { name: "role missing", path: "/api/users", json: { name: "x" }, status: 422, code: "validation_failed" },
  {
    name: "role unknown",
    path: "/api/users",
    json: { name: "x", role: "superuser" },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "role system",
    path: "/api/users",
    json: { name: "x", role: "system" },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "externalId empty",
    path: "/api/users",
    json: { name: "x", role: "user", externalId: "" },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "unlimited a string",
    path: "/api/users",
    json: { name: "x", role: "user", unlimited: "true" },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "createKey a string",
    path: "/api/users",
    json: { name: "x", role: "user", createKey: "yes" },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "externalId taken",
    path: "/api/users",
    json: { name: "again", role: "user", externalId: "taken" },
    status: 409,
    code: "user_exists",
  },
];

const tokenCases: Case[] = [
  {
    name: "ttlSeconds too short",
    path: "/api/tokens",
    as: "app",
    json: { userId: "t", ttlSeconds: 5 },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "ttlSeconds a string",
    path: "/api/tokens",
    as: "app",
    json: { userId: "t", ttlSeconds: "60" },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "ttlSeconds over a week",
    path: "/api/tokens",
    as: "app",
    json: { userId: "t", ttlSeconds: 10_000_000 },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "ttlSeconds a fraction",
    path: "/api/tokens",
    as: "app",
    json: { userId: "t", ttlSeconds: 60.5 },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "userId empty",
    path: "/api/tokens",
    as: "app",
    json: { userId: "" },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "userId a number",
    path: "/api/tokens",
    as: "app",
    json: { userId: 42 },
    status: 422,
    code: "validation_failed",
  },
  {
    name: "userId too long",
    path: "/api/tokens",
    as: "app",
    json: { userId: "u".repeat(129) },
    status: 422,
    code: "validation_failed",
  },
];

const readCases: Case[] = [
  { name: "status unknown", path: "/api/jobs?status=bogus", status: 422, code: "validation_failed" },
  { name: "status empty", path: "/api/jobs?status=", status: 422, code: "validation_failed" },
  { name: "limit zero", path: "/api/jobs?limit=0", status: 422, code: "validation_failed" },
  { name: "limit too big", path: "/api/jobs?limit=201", status: 422, code: "validation_failed" },
  { name: "limit a word", path: "/api/jobs?limit=ten", status: 422, code: "validation_failed" },
  { name: "limit a fraction", path: "/api/jobs?limit=1.5", status: 422, code: "validation_failed" },
  { name: "type too long", path: `/api/jobs?type=${"t".repeat(65)}`, status: 422, code: "validation_failed" },
  {
    name: "cursor too long",
    path: `/api/jobs?cursor=${"c".repeat(65)}`,
    status: 422,
    code: "validation_failed",
  },
  {
    name: "userId too long (app)",
    path: `/api/jobs?userId=${"u".repeat(129)}`,
    as: "app",
    status: 422,
    code: "validation_failed",
  },
  { name: "job id too long", path: `/api/jobs/${"i".repeat(65)}`, status: 422, code: "validation_failed" },
  { name: "job id unknown", path: `/api/jobs/${UNKNOWN_ID}`, status: 404, code: "not_found" },
  { name: "status of unknown job", path: `/api/jobs/${UNKNOWN_ID}/status`, status: 404, code: "not_found" },
  {
    name: "cancel unknown job",
    method: "POST",
    path: `/api/jobs/${UNKNOWN_ID}/cancel`,
    status: 404,
    code: "not_found",
  },
  {
    name: "retry unknown job",
    method: "POST",
    path: `/api/jobs/${UNKNOWN_ID}/retry`,
    status: 404,
    code: "not_found",
  },
  {
    name: "cancel id too long",
    method: "POST",
    path: `/api/jobs/${"i".repeat(65)}/cancel`,
    status: 422,
    code: "validation_failed",
  },
];

const routeCases: Case[] = [
  { name: "unknown path", path: "/api/nope", status: 404, code: "not_found" },
  { name: "unknown path, no key", path: "/api/nope", as: "none", status: 404, code: "not_found" },
  { name: "outside /api", path: "/nope", status: 404, code: "not_found" },
  { name: "too deep", path: "/api/jobs/a/b/c", status: 404, code: "not_found" },
  {
    name: "unknown action",
    method: "POST",
    path: `/api/jobs/${UNKNOWN_ID}/explode`,
    status: 404,
    code: "not_found",
  },
  {
    name: "DELETE on a GET route",
    method: "DELETE",
    path: "/api/jobs",
    status: 405,
    code: "method_not_allowed",
  },
  {
    name: "PUT on a POST route",
    method: "PUT",
    path: "/api/users",
    json: { name: "x", role: "app" },
    status: 405,
    code: "method_not_allowed",
  },
  {
    name: "POST on a GET route",
    method: "POST",
    path: "/api/health",
    json: {},
    status: 405,
    code: "method_not_allowed",
  },
];

const bodyRoutes: Case[] = [
  { name: "/api/jobs", path: "/api/jobs", status: 0, code: "" },
  { name: "/api/users", path: "/api/users", status: 0, code: "" },
  { name: "/api/tokens", path: "/api/tokens", as: "app", status: 0, code: "" },
];

const invalidJsonCases: Case[] = bodyRoutes.flatMap((r) =>
  ['{"type": "echo",', "{not json}", "\u0000"].map((body) => ({
    ...r,
    name: `${r.name} with ${JSON.stringify(body)}`,
    body,
    status: 400,
    code: "invalid_body",
  })),
);

const oversizedCases: Case[] = [
  ...bodyRoutes.map((r) => ({
    ...r,
    json: { name: padding, role: "app", type: "echo", input: { padding } },
  })),
  { name: "/api/jobs without a key", path: "/api/jobs", as: "none" as const, json: { ...validJob, padding } },
  { name: "/api/jobs/:id/cancel", path: `/api/jobs/${UNKNOWN_ID}/cancel`, json: { padding } },
].map((c) => ({
  ...c,
  name: `${c.name}: Content-Length above MAX_BODY_BYTES`,
  status: 413,
  code: "body_too_large",
}));

const junkBodies: unknown[] = [null, 0, true, "text", [], [{}]];
// Every field of POST /api/tokens is optional, so an empty object is valid there.
const objectJunk: unknown[] = [{}];
// Bodies are strict: a field the route does not know is refused by name, before anything else.
const unknownField = { a: { b: { c: { d: [1, 2, { e: null }] } } } };
const junkCases: Case[] = bodyRoutes.flatMap((r) => [
  ...[...junkBodies, ...(r.path === "/api/tokens" ? [] : objectJunk)].map((json) => ({
    ...r,
    name: `${r.name} with ${JSON.stringify(json)}`,
    json,
    status: 422,
    code: "validation_failed",
  })),
  { ...r, name: `${r.name} with an unknown field`, json: unknownField, status: 400, code: "unknown_field" },
]);

describe("bad input gets a 4xx in the error shape and writes nothing", () => {
  let server: TestServer;
  const keys: Record<Caller, string | null> = {
    admin: ADMIN_KEY,
    app: null,
    user: null,
    token: null,
    none: null,
  };

  beforeAll(async () => {
    server = await startTestServer({ jobs: [echo], env: { MAX_BODY_BYTES: String(MAX_BODY_BYTES) } });
    const create = async (json: unknown) =>
      (await (await server.api("/api/users", { method: "POST", json })).json()) as { key: string };
    keys.app = (await create({ name: "app", role: "app" })).key;
    keys.user = (await create({ name: "user", role: "user", externalId: "taken" })).key;
    const minted = await server.api("/api/tokens", {
      method: "POST",
      key: keys.app,
      json: { userId: "browser" },
    });
    keys.token = ((await minted.json()) as { token: string }).token;
  });
  afterAll(() => server.close());

  const counts = () =>
    TABLES.map(
      (t) => (server.ctx.db.$client.query(`SELECT count(*) AS n FROM ${t}`).get() as { n: number }).n,
    );

  async function check(c: Case) {
    const before = counts();
    const headers: Record<string, string> = { ...(c.body !== undefined ? JSON_TYPE : {}), ...c.headers };
    const res = await server.api(c.path, {
      method: c.method ?? (c.json !== undefined || c.body !== undefined ? "POST" : "GET"),
      key: keys[c.as ?? "admin"],
      json: c.json,
      body: c.body,
      headers,
    });
    const text = await res.text();
    expect(`${c.name}: ${res.status} ${text}`).toStartWith(`${c.name}: ${c.status} `);
    expect(res.headers.get("content-type")).toContain("application/json");
    const body = JSON.parse(text) as { error: { code: string; message: string } };
    expect(Object.keys(body)).toEqual(["error"]);
    expect(body.error.code).toBe(c.code);
    expect(typeof body.error.message).toBe("string");
    expect(body.error.message.length).toBeGreaterThan(0);
    expect(counts()).toEqual(before);
  }

  const groups: [string, Case[]][] = [
    ["POST /api/jobs", enqueueCases],
    ["POST /api/users", userCases],
    ["POST /api/tokens", tokenCases],
    ["reads and job control", readCases],
    ["unknown routes", routeCases],
    ["invalid JSON", invalidJsonCases],
    ["oversized bodies", oversizedCases],
    ["bodies of the wrong shape", junkCases],
  ];
  for (const [group, cases] of groups) {
    test(group, async () => {
      for (const c of cases) await check(c);
    });
  }

  test("validation errors name the bad field", async () => {
    const res = await server.api("/api/users", { method: "POST", json: { name: "x", role: "superuser" } });
    const body = (await res.json()) as { error: { message: string; details: { path: string }[] } };
    expect(body.error.message).toContain("role");
    expect(body.error.details.map((d) => d.path)).toEqual(["role"]);
  });

  test("a body far above the limit is refused before it is read, with the JSON error", async () => {
    const before = counts();
    for (const size of [1 << 20, 8 * MAX_BODY_BYTES]) {
      const res = await server.api("/api/jobs", {
        method: "POST",
        json: { ...validJob, padding: "x".repeat(size) },
      });
      expect(res.status).toBe(413);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("body_too_large");
    }
    expect(counts()).toEqual(before);
  });

  test("a chunked body (no Content-Length) is held to the same limit", async () => {
    const chunked = (json: unknown, repeat = 1) => {
      const text = JSON.stringify(json);
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          for (let i = 0; i < repeat; i++) c.enqueue(new TextEncoder().encode(i === 0 ? text : " "));
          c.close();
        },
      });
      return server.api("/api/jobs", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        duplex: "half",
      });
    };
    const before = counts();
    const big = await chunked({ ...validJob, padding: "x".repeat(MAX_BODY_BYTES) });
    expect(big.headers.get("content-type")).toContain("application/json");
    expect(big.status).toBe(413);
    expect(((await big.json()) as { error: { code: string } }).error.code).toBe("body_too_large");
    expect(counts()).toEqual(before);
    const ok = await chunked(validJob, 3);
    expect(ok.status).toBe(202);
  });

  test("valid requests still succeed on the same server (the cases above fail for their stated reason)", async () => {
    expect((await server.api("/api/jobs", { method: "POST", json: validJob })).status).toBe(202);
    expect(
      (await server.api("/api/users", { method: "POST", json: { name: "fine", role: "user" } })).status,
    ).toBe(201);
    const token = await server.api("/api/tokens", {
      method: "POST",
      key: keys.app,
      json: { userId: "t", ttlSeconds: 60 },
    });
    expect(token.status).toBe(201);
    expect((await server.api("/api/jobs?status=queued&limit=200&type=echo")).status).toBe(200);
  });
});
