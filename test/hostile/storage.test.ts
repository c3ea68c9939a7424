/**
 * Storage that refuses writes (read-only, or a file in the way of a directory): an edit request answers
 * 503 `storage_unavailable` and leaves nothing behind — no job, no charge, no input file.
 */
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTestServer, type TestServer, waitFor } from "../helpers";
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

/** True where this process may mount filesystems (root with CAP_SYS_ADMIN); CI containers often may not. */
function canMount(): boolean {
  const probe = mkdtempSync(join(tmpdir(), "easel-mount-probe-"));
  try {
    if (Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe]).exitCode !== 0) return false;
    Bun.spawnSync(["umount", probe]);
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

test.skipIf(!canMount())(
  "an edit on a read-only mount: 503 storage_unavailable, readiness red, nothing written",
  async () => {
    const files = server.ctx.config.filesDir;
    mkdirSync(files, { recursive: true });
    const before = readdirSync(files).length;
    expect(Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", files]).exitCode).toBe(0);
    try {
      const jobs = count("SELECT count(*) AS n FROM jobs");
      const res = await server.api("/api/jobs/generate-image", {
        method: "POST",
        key: userKey,
        json: { prompt: "add a hat", image: dataUrl(await testImage(64, 64, "png")), size: "64x64" },
      });
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("storage_unavailable");
      expect(count("SELECT count(*) AS n FROM jobs")).toBe(jobs);
      expect(readdirSync(files)).toEqual([]);
      const ready = await server.api("/api/health/ready", { key: null });
      expect(ready.status).toBe(503);
    } finally {
      expect(Bun.spawnSync(["umount", files]).exitCode).toBe(0);
    }
    expect(readdirSync(files).length).toBe(before);
    await waitFor(async () => (await server.api("/api/health/ready", { key: null })).status === 200, {
      timeoutMs: 30_000,
      what: "readiness once the mount is gone",
    });
  },
);
