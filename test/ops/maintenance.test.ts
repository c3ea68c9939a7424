import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdir, readdir, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runRetention, sweepStorage } from "../../src/modules/ops/maintenance";
import { testImage } from "../fakes/base";
import { startTestServer, type TestServer } from "../helpers";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

test("retention also refreshes the query planner's statistics (PRAGMA optimize)", async () => {
  const db = server.ctx.db.$client;
  const stats = () =>
    (db.query("SELECT count(*) AS n FROM sqlite_master WHERE name = 'sqlite_stat1'").get() as { n: number })
      .n;
  expect(stats()).toBe(0);
  await server.ctx.sql.transaction(async () => {
    for (let i = 0; i < 2000; i++)
      await server.ctx.users.create({ name: `u${i}`, role: "user", externalId: `e${i}` });
  });
  // Queries that use an index are what `PRAGMA optimize` looks at.
  const byExternal = db.query("SELECT id FROM users WHERE parent_id IS NULL AND external_id = ?");
  for (let i = 0; i < 50; i++) expect(byExternal.get(`e${i}`)).not.toBeNull();
  await runRetention(server.ctx);
  expect(stats()).toBe(1);
  const analysed = db.query("SELECT tbl FROM sqlite_stat1").all() as { tbl: string }[];
  expect(analysed.map((r) => r.tbl)).toContain("users");
});

test("the storage sweep also removes temp files left by a write killed mid-way (kill -9)", async () => {
  const dir = join(server.ctx.config.filesDir, "generations", "someone");
  await mkdir(dir, { recursive: true });
  const stale = join(dir, ".img.png.0b7f1c1e-6f0a-4a57-9a8e-2f4f3c2d1e0a.tmp");
  const live = join(dir, ".img2.png.1b7f1c1e-6f0a-4a57-9a8e-2f4f3c2d1e0a.tmp");
  await writeFile(stale, "half an image");
  await writeFile(live, "being written");
  const old = new Date(Date.now() - 2 * 3_600_000);
  await utimes(stale, old, old);
  const swept = await sweepStorage(server.ctx);
  expect(swept.tempFiles).toBe(1);
  expect(await readdir(dir)).toEqual([".img2.png.1b7f1c1e-6f0a-4a57-9a8e-2f4f3c2d1e0a.tmp"]);
});

test("the storage sweep keeps the uploads a job still names, and takes them once the job is gone", async () => {
  const png = await testImage({ width: 32, height: 32 });
  const image = `data:image/png;base64,${Buffer.from(png).toString("base64")}`;
  const res = await server.api("/api/jobs/generate-image", {
    method: "POST",
    json: { provider: "placeholder", prompt: "[slow] edit me", image, mask: image },
  });
  expect(res.status).toBe(202);
  const { jobId } = (await res.json()) as { jobId: string };
  const stray = "inputs/0000-stray/image.png";
  await server.ctx.storage.put(stray, png, { contentType: "image/png" });
  const uploads = async () => {
    const keys: string[] = [];
    for await (const o of server.ctx.storage.list("inputs/")) keys.push(o.key);
    return keys.sort();
  };
  const named = (await uploads()).filter((k) => k !== stray);
  expect(named).toHaveLength(2);
  // Past the grace period, as a crash between a write and its row would leave them.
  const old = new Date(Date.now() - 3 * 24 * 3_600_000);
  for (const key of await uploads()) await utimes(join(server.ctx.config.filesDir, key), old, old);

  await sweepStorage(server.ctx);
  expect(await uploads()).toEqual(named);

  await server.api(`/api/jobs/${jobId}/cancel`, { method: "POST" });
  // Deleted as retention or an operator would: the job's input keys go with it.
  server.ctx.db.$client.run("DELETE FROM jobs WHERE id = ?", [jobId]);
  await sweepStorage(server.ctx);
  expect(await uploads()).toEqual([]);
});
