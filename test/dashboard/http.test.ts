/**
 * The dashboard over plain HTTP (no browser): who may sign in, what an app key sees, the cookie-authenticated
 * WebSocket, and sessions ending with their key. test/dashboard.browser.test.ts covers the pages in Chromium.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { hashKey } from "../../src/modules/auth/service";
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from "../helpers";

let server: TestServer;
let appKey: string;
let userKey: string;
let appJob: string;
let adminJob: string;

async function json<T>(res: Response): Promise<T> {
  if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

const createUser = async (role: "app" | "user") =>
  (
    await json<{ key: string }>(
      await server.api("/api/users", { method: "POST", json: { name: `A ${role}`, role } }),
    )
  ).key;

async function signIn(key: string): Promise<Response> {
  return fetch(`${server.url}/dashboard/login`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", origin: server.url },
    body: new URLSearchParams({ key }),
  });
}

async function sessionOf(key: string): Promise<string> {
  const res = await signIn(key);
  expect(res.status).toBe(303);
  return res.headers.get("set-cookie")!.split(";")[0]!;
}

const page = (path: string, cookie: string) =>
  fetch(`${server.url}${path}`, { headers: { cookie }, redirect: "manual" });

beforeAll(async () => {
  server = await startTestServer({ env: { RENDER_WORKERS: "1", CREDITS_ENABLED: "false" } });
  appKey = await createUser("app");
  userKey = await createUser("user");
  const generate = async (key: string, body: object) =>
    json<{ jobId: string }>(
      await server.api("/api/jobs/generate-image", {
        method: "POST",
        key,
        json: { size: "256x256", ...body },
      }),
    );
  appJob = (await generate(appKey, { prompt: "an app user's fox", userId: "player-1" })).jobId;
  adminJob = (await generate(ADMIN_KEY, { prompt: "the admin's own fox" })).jobId;
});
afterAll(() => server.close());

describe("sign-in", () => {
  test("only admin and app keys may sign in; user keys, client tokens and unknown keys may not", async () => {
    expect((await signIn(userKey)).status).toBe(403);
    const { token } = await json<{ token: string }>(
      await server.api("/api/tokens", { method: "POST", json: { userId: "someone" } }),
    );
    expect((await signIn(token)).status).toBe(401);
    expect((await signIn("esk_nope")).status).toBe(401);
    const cross = await fetch(`${server.url}/dashboard/login`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", origin: "https://evil.example" },
      body: new URLSearchParams({ key: ADMIN_KEY }),
    });
    expect(cross.status).toBe(403);
    expect(cross.headers.get("set-cookie")).toBeNull();
  });

  test("pages send the signed-out to the sign-in page; fragments answer 401", async () => {
    const res = await page("/dashboard/jobs", "");
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/dashboard/login");
    expect((await page("/dashboard/fragments/jobs", "")).status).toBe(401);
  });

  test("the signed-out are refused before their query or form is validated: no 422 describing it", async () => {
    const page = await fetch(`${server.url}/dashboard/jobs?status=bogus&limit=-5`, { redirect: "manual" });
    expect(page.status).toBe(303);
    expect(page.headers.get("location")).toBe("/dashboard/login");
    const action = await fetch(`${server.url}/dashboard/jobs/nope/retry`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", origin: server.url },
      body: "not=a&valid=form",
    });
    expect(action.status).toBe(401);
    expect(((await action.json()) as { error: { code: string } }).error.code).toBe("unauthorized");
  });

  test("pages carry a CSP that allows no inline script and no other origin's script", async () => {
    const res = await page("/dashboard", await sessionOf(ADMIN_KEY));
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    // Every script is a file of this origin: no inline code.
    expect(await res.text()).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
  });
});

describe("an app key", () => {
  test("sees its users' jobs but not the admin's, and not the shared backlog", async () => {
    await waitFor(
      async () =>
        (await json<{ status: string }>(await server.api(`/api/jobs/${appJob}/status`))).status ===
        "completed",
    );
    const cookie = await sessionOf(appKey);
    const jobs = await (await page("/dashboard/jobs", cookie)).text();
    expect(jobs).toContain(appJob);
    expect(jobs).not.toContain(adminJob);
    expect(jobs).toContain("player-1");
    expect((await page(`/dashboard/jobs/${adminJob}`, cookie)).status).toBe(404);
    expect((await page(`/dashboard/jobs/${appJob}`, cookie)).status).toBe(200);
    expect((await page("/dashboard/backlog", cookie)).status).toBe(403);
    const admin = await (await page("/dashboard/jobs", await sessionOf(ADMIN_KEY))).text();
    expect(admin).toContain(adminJob);
    expect(admin).toContain(appJob);
  });

  test("a job's page shows the timeline of its attempts, as GET /api/jobs/:id gives it", async () => {
    const { jobId } = await json<{ jobId: string }>(
      await server.api("/api/jobs/generate-image", {
        method: "POST",
        json: { prompt: "[fail] a fox that never draws", size: "256x256" },
      }),
    );
    type Detail = {
      status: string;
      history: { attempt: number; outcome: string; error: { code: string } }[];
    };
    const failed = async () =>
      waitFor(
        async () => {
          const job = await json<Detail>(await server.api(`/api/jobs/${jobId}`));
          return job.status === "failed" ? job : null;
        },
        { timeoutMs: 20_000, what: "the job to fail" },
      );
    expect((await failed()).history).toEqual([]);
    expect((await server.api(`/api/jobs/${jobId}/retry`, { method: "POST" })).status).toBe(200);
    await waitFor(
      async () => (await json<Detail>(await server.api(`/api/jobs/${jobId}`))).status !== "failed",
    );
    const again = await failed();
    expect(again.history).toEqual([
      expect.objectContaining({
        attempt: 1,
        outcome: "rerun",
        error: expect.objectContaining({ code: "provider_unavailable" }),
      }),
    ]);
    const html = await (await page(`/dashboard/jobs/${jobId}`, await sessionOf(ADMIN_KEY))).text();
    expect(html).toContain("Attempt 1 ended, re-run by hand");
    expect(html).toContain("provider_unavailable");
    expect(html).toContain("Attempt 2 started");
    // The overview's provider health saw those failures.
    const overview = await (await page("/dashboard", await sessionOf(ADMIN_KEY))).text();
    expect(overview).toMatch(/badge s-(failed|partial)">(failing|degraded)/);
    expect(overview).toContain("provider_unavailable");
  }, 60_000);

  test("its session ends when the key is revoked", async () => {
    const key = await createUser("app");
    const cookie = await sessionOf(key);
    expect((await page("/dashboard", cookie)).status).toBe(200);
    const row = server.ctx.db.$client.query("SELECT id FROM api_keys WHERE hash = ?").get(hashKey(key)) as {
      id: string;
    };
    await server.ctx.auth.revokeKey(row.id);
    expect((await page("/dashboard", cookie)).status).toBe(303);
  });
});

describe("state changes", () => {
  const form = { "content-type": "application/x-www-form-urlencoded" };
  const post = (path: string, cookie: string, body: string, headers: Record<string, string> = {}) =>
    fetch(`${server.url}${path}`, {
      method: "POST",
      headers: { ...form, cookie, origin: server.url, ...headers },
      body,
      redirect: "manual",
    });

  test("need the session's CSRF token and this origin (403 otherwise); with both they act", async () => {
    const cookie = await sessionOf(ADMIN_KEY);
    const csrf = /data-csrf="([^"]+)"/.exec(await (await page("/dashboard", cookie)).text())![1]!;
    const otherCsrf = /data-csrf="([^"]+)"/.exec(
      await (await page("/dashboard", await sessionOf(ADMIN_KEY))).text(),
    )![1]!;
    const { jobId } = await json<{ jobId: string }>(
      await server.api("/api/jobs/generate-image", {
        method: "POST",
        json: { prompt: "[slow] a fox to cancel", size: "256x256" },
      }),
    );
    const actions = [
      `/dashboard/jobs/${jobId}/cancel`,
      `/dashboard/jobs/${jobId}/retry`,
      "/dashboard/logout",
    ];
    for (const path of actions) {
      expect(`${path} ${(await post(path, cookie, "")).status}`).toBe(`${path} 403`);
      expect(`${path} ${(await post(path, cookie, `_csrf=${otherCsrf}`)).status}`).toBe(`${path} 403`);
      const crossSite = await post(path, cookie, `_csrf=${csrf}`, { origin: "https://evil.example" });
      expect(`${path} ${crossSite.status}`).toBe(`${path} 403`);
    }
    expect(
      (await server.api(`/api/jobs/${jobId}`).then((r) => r.json())) as { status: string },
    ).not.toMatchObject({
      status: "cancelled",
    });
    // The positive control: the same request with the token and this origin cancels the job.
    const cancelled = await post(`/dashboard/jobs/${jobId}/cancel`, cookie, `_csrf=${csrf}`);
    expect(cancelled.status).toBe(303);
    expect(
      ((await server.api(`/api/jobs/${jobId}`).then((r) => r.json())) as { status: string }).status,
    ).toBe("cancelled");
  });
});

describe("WS /dashboard/ws", () => {
  /** The first frame, or the close code if the server closes first. */
  function connect(headers: Record<string, string>): Promise<{ type?: string; code?: number }> {
    const ws = new WebSocket(`${server.url.replace("http", "ws")}/dashboard/ws`, { headers } as never);
    return new Promise((resolve) => {
      ws.onmessage = (e) => {
        resolve(JSON.parse(String(e.data)));
        ws.close();
      };
      ws.onclose = (e) => resolve({ code: e.code });
    });
  }

  test("speaks the /ws protocol for a signed-in page of this origin only", async () => {
    const cookie = await sessionOf(ADMIN_KEY);
    expect(await connect({ cookie, origin: server.url })).toMatchObject({ type: "connection_confirmed" });
    expect(await connect({ cookie, origin: "https://evil.example" })).toEqual({ code: 4401 });
    expect(await connect({ origin: server.url })).toEqual({ code: 4401 });
  });
});

describe("the keys page", () => {
  const form = (path: string, cookie: string, fields: Record<string, string>) =>
    fetch(`${server.url}${path}`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", cookie, origin: server.url },
      body: new URLSearchParams(fields),
    });
  const csrfOf = async (cookie: string) =>
    /data-csrf="([^"]+)"/.exec(await (await page("/dashboard/keys", cookie)).text())![1]!;
  const shownKey = (body: string) => /value="(esk_[^"]+)" data-new-key/.exec(body)?.[1];
  const status = async (key: string) => (await server.api("/api/profile", { key })).status;

  test("creates (shown once), rotates and revokes keys behind the CSRF token", async () => {
    const key = await createUser("app");
    const cookie = await sessionOf(key);
    const csrf = await csrfOf(cookie);

    const refused = await form("/dashboard/keys", cookie, { name: "no token" });
    expect(refused.status).toBe(403);

    const made = await form("/dashboard/keys", cookie, {
      _csrf: csrf,
      name: "deploy",
      expiresInSeconds: "2592000",
    });
    expect(made.status).toBe(200);
    const body = await made.text();
    const deploy = shownKey(body)!;
    expect(deploy).toStartWith("esk_");
    expect(body).toContain("shown this once");
    expect(await status(deploy)).toBe(200);

    const listing = await (await page("/dashboard/keys", cookie)).text();
    expect(listing).not.toContain(deploy);
    expect(listing).toContain(`${deploy.slice(0, 12)}…`);
    expect(listing).not.toContain("no token");
    const id = /data-key-id="([^"]+)" data-status="active">\s*<td>deploy<\/td>/.exec(listing)![1]!;

    const rotated = await form(`/dashboard/keys/${id}/rotate`, cookie, { _csrf: csrf });
    expect(rotated.status).toBe(200);
    const next = shownKey(await rotated.text())!;
    expect(next).not.toBe(deploy);
    expect(await status(deploy)).toBe(401);
    expect(await status(next)).toBe(200);

    const nextId = (await server.api("/api/keys", { key }).then((r) => r.json())) as {
      keys: { id: string; name: string; status: string }[];
    };
    const active = nextId.keys.find((k) => k.name === "deploy" && k.status === "active")!;
    const revoked = await form(`/dashboard/keys/${active.id}/revoke`, cookie, { _csrf: csrf });
    expect(revoked.status).toBe(303);
    expect(revoked.headers.get("location")).toBe("/dashboard/keys?done=revoked");
    expect(await status(next)).toBe(401);
    // The session's own key still works: only the revoked one stopped.
    expect((await page("/dashboard/keys", cookie)).status).toBe(200);
  });

  test("an app sees its end users' keys, not another app's, and cannot revoke the admin's", async () => {
    const key = await createUser("app");
    const cookie = await sessionOf(key);
    const csrf = await csrfOf(cookie);
    const player = (await (
      await server.api("/api/keys", { method: "POST", key, json: { name: "player", userId: "player-9" } })
    ).json()) as { id: string; userId: string };
    const players = await (await page("/dashboard/keys?user=player-9", cookie)).text();
    expect(players).toContain(`data-key-id="${player.id}"`);

    const other = await sessionOf(await createUser("app"));
    const foreign = await page("/dashboard/keys?user=player-9", other);
    expect(foreign.status).toBe(404);
    expect(await foreign.text()).not.toContain(player.id);

    const admins = (await server.api("/api/keys").then((r) => r.json())) as { keys: { id: string }[] };
    const attempt = await form(`/dashboard/keys/${admins.keys[0]!.id}/revoke`, cookie, { _csrf: csrf });
    expect(attempt.status).toBe(303);
    expect(attempt.headers.get("location")).toBe("/dashboard/keys?error=not_found");
    expect(await status(ADMIN_KEY)).toBe(200);
  });

  test("revoking the key a session signed in with ends that session", async () => {
    const key = await createUser("app");
    const cookie = await sessionOf(key);
    const mine = (await server.api("/api/keys", { key }).then((r) => r.json())) as { keys: { id: string }[] };
    const out = await form(`/dashboard/keys/${mine.keys[0]!.id}/revoke`, cookie, {
      _csrf: await csrfOf(cookie),
    });
    expect(out.headers.get("location")).toBe("/dashboard/login");
    expect((await page("/dashboard/keys", cookie)).status).toBe(303);
  });
});
