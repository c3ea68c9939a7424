/**
 * Sends the hostile corpus (corpus.ts), generated from the served OpenAPI document, to every documented
 * route, with the admin key and without any key: no answer may be a 5xx, and every API error must be the
 * JSON `{ error: { code, message } }` shape. HTML routes (dashboard, docs) are held to "no 5xx" only.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { ADMIN_KEY, startTestServer, type TestServer } from "../helpers";
import { casesFor, type HostileCase, type OpenApi, operations } from "./corpus";

// bunfig's [test] timeout is not read by this Bun: the per-file default is set here, generously (a loaded
// machine makes these slower, never red).
setDefaultTimeout(60_000);

/**
 * Cases per operation and caller (a deterministic sample above it): ~70 operations × 2 callers × 40 is
 * about 4,000 requests, a few seconds on an idle machine. The body cap is above the 200 KB deep-bracket
 * case, so that case reaches the parser instead of being refused for its size.
 */
const CAP = 40;
const MAX_BODY_BYTES = 512 * 1024;

let server: TestServer;
let doc: OpenApi;

beforeAll(async () => {
  server = await startTestServer({
    env: { MAX_BODY_BYTES: String(MAX_BODY_BYTES), WORKER_CONCURRENCY: "2", RENDER_WORKERS: "1" },
  });
  doc = (await (await server.api("/docs/json")).json()) as OpenApi;
});
afterAll(() => server.close());

const isApiRoute = (path: string) => !path.startsWith("/dashboard") && !path.startsWith("/docs");

/** Operations that take `Authorization: Bearer` (the others are public, or use the dashboard's cookie). */
const bearer = (op: { security?: Record<string, unknown>[] }) =>
  op.security?.some((s) => "bearerAuth" in s) ?? false;

/** Before authentication only the body's framing may be refused: its size, depth or syntax. */
const PRE_AUTH = new Set(["unauthorized", "body_too_large", "body_too_deep", "invalid_body"]);

/** What is wrong with the answer to `c`, or null when it is fine. */
async function verdict(
  c: HostileCase,
  res: Response,
  caller: { anonymous: boolean; secured: boolean },
): Promise<string | null> {
  const text = c.method === "HEAD" ? "" : await res.text();
  if (res.status >= 500) return `${res.status} ${text.slice(0, 200)}`;
  if (caller.anonymous && caller.secured && res.status !== 404) {
    const code = (JSON.parse(text || "{}") as { error?: { code?: string } }).error?.code ?? "";
    if (!PRE_AUTH.has(code)) return `anonymous caller got ${res.status} ${code} instead of 401`;
  }
  if (res.status < 400 || c.method === "HEAD" || !isApiRoute(c.path)) return null;
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code !== "string" || typeof body.error.message !== "string") {
      return `${res.status} without {error:{code,message}}: ${text.slice(0, 200)}`;
    }
  } catch {
    return `${res.status} not JSON: ${text.slice(0, 200)}`;
  }
  return null;
}

async function send(c: HostileCase, key: string | null): Promise<Response> {
  const headers = new Headers(c.headers);
  if (key) headers.set("authorization", `Bearer ${key}`);
  return fetch(`${server.url}${c.path}`, {
    method: c.method,
    headers,
    body: c.body,
    redirect: "manual",
    signal: AbortSignal.timeout(60_000),
  });
}

test("no request in the hostile corpus gets a 5xx, and API errors keep the JSON error shape", async () => {
  const ops = operations(doc);
  expect(ops.length).toBeGreaterThan(50);
  const problems: string[] = [];
  let sent = 0;
  for (const [method, path, op] of ops) {
    // A generator per caller: a streamed body can only be sent once.
    for (const key of [ADMIN_KEY, null]) {
      const cases = casesFor(method, path, op, doc, { cap: CAP, maxBodyBytes: MAX_BODY_BYTES });
      // A few at a time: enough to overlap, not enough to turn the test into a load test.
      for (let i = 0; i < cases.length; i += 4) {
        await Promise.all(
          cases.slice(i, i + 4).map(async (c) => {
            let problem: string | null;
            try {
              problem = await verdict(c, await send(c, key), { anonymous: !key, secured: bearer(op) });
            } catch (err) {
              problem = `request failed: ${(err as Error).message}`;
            }
            sent++;

            if (problem)
              problems.push(
                `${c.method} ${c.path.slice(0, 80)} [${c.label}] ${key ? "admin" : "anonymous"}: ${problem}`,
              );
          }),
        );
      }
    }
  }
  expect(problems).toEqual([]);
  expect(sent).toBeGreaterThan(1000);
  // And the server is still fine afterwards.
  expect((await server.api("/api/health/live", { key: null })).status).toBe(200);
}, 240_000);
