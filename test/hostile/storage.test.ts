/**
 * Storage that refuses writes (read-only, or a file in the way of a directory): an edit request answers
 * 503 `storage_unavailable` and leaves nothing behind — no job, no charge, no input file.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startTestServer, type TestServer } from "../helpers";
import { testImage } from "../images/fixtures";

// bunfig's [test] timeout is not read by this Bun: the per-file default is set here, generously (a loaded
// machine makes these slower, never red).
setDefaultTimeout(60_000);

let server: TestServer;
let userKey: string;
let userId: string;

beforeAll(async () => {
  server = await startTestServer();
  const created = await server.api("/api/users", { method: "POST", json: { name: "editor", role: "user" } });
  const body = (await created.json()) as { user: { id: string }; key: string };
  userKey = body.key;
  userId = body.user.id;
  const grant = await server.api(`/api/users/${userId}/credits`, {
    method: "POST",
    json: { amount: 5, reason: "grant" },
  });
  expect(grant.status).toBe(200);
});
afterAll(() => server.close());

const dataUrl = (bytes: Uint8Array) => `data:image/png;base64,${Buffer.from(bytes).toString("base64")}`;
const count = (sql: string) => (server.ctx.db.$client.query(sql).get() as { n: number }).n;

test("an edit while storage refuses writes: 503 storage_unavailable, and no job, charge or file", async () => {
  const inputs = join(server.ctx.config.filesDir, "inputs");
  rmSync(inputs, { recursive: true, force: true });
  mkdirSync(server.ctx.config.filesDir, { recursive: true });
  // A file where the inputs directory should be: every write under inputs/ fails (ENOTDIR), as on a
  // read-only mount, while the rest of the server works.
  writeFileSync(inputs, "in the way");
  try {
    const image = dataUrl(await testImage(64, 64, "png"));
    const mask = dataUrl(await testImage(64, 64, "png"));
    const res = await server.api("/api/jobs/generate-image", {
      method: "POST",
      key: userKey,
      json: { prompt: "add a hat", image, mask, size: "64x64" },
    });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("30");
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("storage_unavailable");
    expect(body.error.message).not.toContain(server.ctx.config.filesDir);
    expect(count("SELECT count(*) AS n FROM jobs")).toBe(0);
    expect(count(`SELECT credits AS n FROM users WHERE id = '${userId}'`)).toBe(5);
    expect(count("SELECT count(*) AS n FROM credit_ledger WHERE reason = 'charge'")).toBe(0);
  } finally {
    rmSync(inputs, { force: true });
  }
  // Once the store is back, the same request goes through.
  const again = await server.api("/api/jobs/generate-image", {
    method: "POST",
    key: userKey,
    json: { prompt: "add a hat", image: dataUrl(await testImage(64, 64, "png")), size: "64x64" },
  });
  expect(again.status).toBe(202);
  expect(readdirSync(inputs)).toHaveLength(1);
});
