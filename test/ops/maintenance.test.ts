import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdir, readdir, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runRetention, sweepStorage } from "../../src/modules/ops/maintenance";
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
