/**
 * Sign-out survives a restart: the server process is stopped and started again on the same data dir, and a
 * signed-out cookie stays refused (pages and CSRF-protected actions), while a session never signed out
 * still works.
 */
import { afterAll, expect, test } from "bun:test";
import { ADMIN_KEY, type ServerProcess, spawnServer, tempDir } from "../helpers";

const tmp = tempDir();
let server: ServerProcess | null = null;
afterAll(async () => {
  server?.proc.kill(9);
  await server?.proc.exited;
  tmp.cleanup();
});

async function signIn(url: string): Promise<{ cookie: string; csrf: string }> {
  const res = await fetch(`${url}/dashboard/login`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", origin: url },
    body: new URLSearchParams({ key: ADMIN_KEY }),
  });
  expect(res.status).toBe(303);
  const cookie = res.headers.get("set-cookie")!.split(";")[0]!;
  const page = await (await fetch(`${url}/dashboard`, { headers: { cookie } })).text();
  return { cookie, csrf: /data-csrf="([^"]+)"/.exec(page)![1]! };
}

const post = (url: string, path: string, s: { cookie: string; csrf: string }) =>
  fetch(`${url}${path}`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", origin: url, cookie: s.cookie },
    body: new URLSearchParams({ _csrf: s.csrf }),
  });

test("a signed-out cookie is refused after a restart, actions included", async () => {
  server = await spawnServer(tmp.dir);
  const signedOut = await signIn(server.url);
  const kept = await signIn(server.url);
  expect((await post(server.url, "/dashboard/logout", signedOut)).status).toBe(303);

  server.proc.kill("SIGTERM");
  expect(await server.proc.exited).toBe(0);
  server = await spawnServer(tmp.dir);
  const url = server.url;

  const page = await fetch(`${url}/dashboard`, { headers: { cookie: signedOut.cookie }, redirect: "manual" });
  expect(page.status).toBe(303);
  expect(page.headers.get("location")).toBe("/dashboard/login");
  // A job to act on, so only the session decides the answer.
  const job = await fetch(`${url}/api/jobs`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ type: "echo", input: { n: 1 }, delayMs: 3_600_000 }),
  });
  const { id } = (await job.json()) as { id: string };
  expect((await post(url, `/dashboard/jobs/${id}/cancel`, signedOut)).status).toBe(401);
  expect((await post(url, "/dashboard/logout", signedOut)).status).toBe(401);

  // The control: a session that was not signed out lives through the restart and acts.
  expect(
    (await fetch(`${url}/dashboard`, { headers: { cookie: kept.cookie }, redirect: "manual" })).status,
  ).toBe(200);
  expect((await post(url, `/dashboard/jobs/${id}/cancel`, kept)).status).toBe(303);
}, 60_000);
