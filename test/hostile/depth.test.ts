import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { jsonTooDeep } from "../../src/json-depth";
import { startTestServer, type TestServer } from "../helpers";

// bunfig's [test] timeout is not read by this Bun: the per-file default is set here, generously (a loaded
// machine makes these slower, never red).
setDefaultTimeout(60_000);

type ErrorBody = { error: { code: string; message: string; details?: unknown } };

const DEPTH = 100_000;
/** 200 KB of brackets: before the depth limit, a 500 after seconds with the event loop blocked. */
const DEEP = "[".repeat(DEPTH) + "]".repeat(DEPTH);

function nested(levels: number): unknown {
  let v: unknown = "leaf";
  for (let i = 0; i < levels; i++) v = { a: v };
  return v;
}

const post = (s: TestServer, path: string, body: string, key?: string | null) =>
  s.api(path, { method: "POST", key, body, headers: { "content-type": "application/json" } });

describe("JSON depth limit", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  test("a deeply nested body gets 400 body_too_deep, with or without a key", async () => {
    for (const key of [null, undefined]) {
      const res = await post(server, "/api/jobs/generate-image", DEEP, key);
      expect(res.status).toBe(400);
      expect(((await res.json()) as ErrorBody).error.code).toBe("body_too_deep");
    }
  });

  test("a deep metadata object with a valid key gets 400, one within the limit is accepted", async () => {
    const deep = await server.api("/api/jobs/generate-image", {
      method: "POST",
      json: { prompt: "a cat", metadata: nested(5000) },
    });
    expect(deep.status).toBe(400);
    expect(((await deep.json()) as ErrorBody).error.code).toBe("body_too_deep");
    const fine = await server.api("/api/jobs/generate-image", {
      method: "POST",
      json: { prompt: "a cat", metadata: nested(60) },
    });
    expect(fine.status).toBe(202);
  });

  test("health answers while eight deep bodies are in flight, and none of them gets a 5xx", async () => {
    const deep = Array.from({ length: 8 }, () => post(server, "/api/cards", DEEP, null));
    const live = await server.api("/api/health/live", { key: null });
    expect(live.status).toBe(200);
    const statuses = await Promise.all(deep.map(async (p) => (await p).status));
    expect(statuses).toEqual(Array(8).fill(400));
  });

  test("JSON carried in a multipart field is held to the same depth limit", async () => {
    const form = new FormData();
    form.set("prompt", "a cat");
    form.set("params", `{"a":${DEEP}}`);
    const res = await server.api("/api/jobs/generate-image/upload", { method: "POST", body: form });
    expect(res.status).toBe(400);
    expect(((await res.json()) as ErrorBody).error.code).toBe("body_too_deep");
  });

  test("brackets inside strings do not count towards the depth", async () => {
    const prompt = `${"[{".repeat(500)} \\" ${"]}".repeat(500)}`;
    const res = await server.api("/api/jobs/generate-image", { method: "POST", json: { prompt } });
    expect(res.status).toBe(202);
  });
});

describe("authentication comes before validation", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  test("an anonymous caller with a body the schema refuses gets 401, not a 422 describing the schema", async () => {
    for (const [path, body] of [
      ["/api/jobs/generate-image", { prompt: 5, size: "huge" }],
      ["/api/cards", { template: 1 }],
      ["/api/users", { role: "emperor" }],
    ] as const) {
      const res = await server.api(path, { method: "POST", key: null, json: body });
      expect(res.status).toBe(401);
      const error = ((await res.json()) as ErrorBody).error;
      expect(error.code).toBe("unauthorized");
      expect(error.details).toBeUndefined();
    }
  });

  test("a wrong key gets 401 and a key without the role gets 403, before any 422", async () => {
    const wrong = await server.api("/api/users", { method: "POST", key: "esk_nope", json: { role: 1 } });
    expect(wrong.status).toBe(401);
    const created = await server.api("/api/users", {
      method: "POST",
      json: { name: "plain", role: "user" },
    });
    expect(created.status).toBe(201);
    const { key: apiKey } = (await created.json()) as { key: string };
    const res = await server.api("/api/users", { method: "POST", key: apiKey, json: { role: 1 } });
    expect(res.status).toBe(403);
  });

  test("an authenticated caller still gets the 422 naming the field", async () => {
    const res = await server.api("/api/jobs/generate-image", { method: "POST", json: { prompt: 5 } });
    expect(res.status).toBe(422);
    expect(((await res.json()) as ErrorBody).error.code).toBe("validation_failed");
  });
});

test("MAX_JSON_DEPTH sets the limit", async () => {
  const server = await startTestServer({ env: { MAX_JSON_DEPTH: "4" } });
  try {
    const ok = await server.api("/api/jobs/generate-image", {
      method: "POST",
      json: { prompt: "x", metadata: nested(2) },
    });
    expect(ok.status).toBe(202);
    const deep = await server.api("/api/jobs/generate-image", {
      method: "POST",
      json: { prompt: "x", metadata: nested(4) },
    });
    expect(deep.status).toBe(400);
    expect(((await deep.json()) as ErrorBody).error.code).toBe("body_too_deep");
  } finally {
    await server.close();
  }
});

test("jsonTooDeep counts brackets outside strings only, escapes included", () => {
  expect(jsonTooDeep("[[1]]", 2)).toBe(false);
  expect(jsonTooDeep("[[[1]]]", 2)).toBe(true);
  expect(jsonTooDeep('{"a":"[[[[\\"[[["}', 1)).toBe(false);
  expect(jsonTooDeep('{"a":"\\\\"}', 1)).toBe(false);
  expect(jsonTooDeep('[{"a":"\\\\",'.concat('"b":[[]]}]'), 3)).toBe(true);
  expect(jsonTooDeep(DEEP, 64)).toBe(true);
});
