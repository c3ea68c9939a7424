import { afterAll, beforeAll, expect, test } from "bun:test";
import { runRetention } from "../../src/modules/ops/maintenance";
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
  db.transaction(() => {
    for (let i = 0; i < 2000; i++)
      server.ctx.users.create({ name: `u${i}`, role: "user", externalId: `e${i}` });
  })();
  // Queries that use an index are what `PRAGMA optimize` looks at.
  const byExternal = db.query("SELECT id FROM users WHERE parent_id IS NULL AND external_id = ?");
  for (let i = 0; i < 50; i++) expect(byExternal.get(`e${i}`)).not.toBeNull();
  await runRetention(server.ctx);
  expect(stats()).toBe(1);
  const analysed = db.query("SELECT tbl FROM sqlite_stat1").all() as { tbl: string }[];
  expect(analysed.map((r) => r.tbl)).toContain("users");
});
