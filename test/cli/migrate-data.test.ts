/**
 * `easel migrate-data --to postgres://…` through the real CLI: a data dir filled by a real server through its
 * HTTP API, copied into a fresh PostgreSQL database, then compared table by table and row by row.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { getTableName } from "drizzle-orm";
import { openDb } from "../../src/db/client";
import { tablesInCopyOrder } from "../../src/db/copy";
import { migratePg } from "../../src/db/pg/migrate";
import { pgSql } from "../../src/db/pg/sql";
import { columnList, rowMapper } from "../../src/db/rows";
import type { Sql } from "../../src/db/sql";
import { sqliteClient } from "../../src/db/sqlite";
import { pgDatabasePerTest } from "../db/pg-helpers";
import { createRecipe, createUser, expectStatus, grant } from "../fixtures/backlog";
import { expectExit, runEasel, startTestServer, type TestServer, tempDir, waitFor } from "../helpers";

const { database } = pgDatabasePerTest();
const source = tempDir("easel-migrate-data-");
afterAll(source.cleanup);

const TERMINAL = ["completed", "partial", "failed", "cancelled"];

/** Every row of every table on one side, decoded by the table's row mapper and sorted, by table name. */
async function allRows(sql: Sql): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const table of tablesInCopyOrder()) {
    const toRow = rowMapper(table);
    const rows = await sql.all(`SELECT ${columnList(table)} FROM ${getTableName(table)}`);
    out[getTableName(table)] = rows
      .map((r) => toRow(r))
      .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  }
  return out;
}

function sqliteRows(): Promise<Record<string, unknown[]>> {
  const db = openDb(join(source.dir, "easel.db"));
  return allRows(sqliteClient(db.$client)).finally(() => db.$client.close());
}

describe("easel migrate-data", () => {
  let server: TestServer;
  let receiver: ReturnType<typeof Bun.serve>;

  beforeAll(async () => {
    receiver = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("ok") });
    server = await startTestServer({
      dir: source.dir,
      env: { ALLOW_PRIVATE_URLS: "true", BACKLOG_CRON: "0 0 1 1 *", CARD_DEBOUNCE_MS: "0" },
    });
    const app = await createUser(server.api, { role: "app", name: "the app" });
    const user = await createUser(server.api, { credits: 40, name: "Zoë" });
    await createUser(server.api, { unlimited: true });
    await grant(server.api, user.id, 5);
    await createRecipe(server.api, { id: "fox", backlogMin: 0 });
    await expectStatus(
      await server.api("/api/webhooks", {
        method: "POST",
        key: user.key,
        json: { url: `http://127.0.0.1:${receiver.port}/hook`, events: ["*"] },
      }),
      201,
    );
    await expectStatus(
      await server.api("/api/cards", {
        method: "POST",
        key: user.key,
        json: {
          template: "poll",
          data: {
            question: "Tea?",
            creator: { name: "Ada" },
            options: [
              { label: "yes", votes: 2 },
              { label: "no", votes: 1 },
            ],
          },
        },
      }),
      201,
    );
    const jobs: string[] = [];
    for (const body of [
      {
        items: [
          { id: "a", prompt: "one" },
          { id: "b", prompt: "two" },
        ],
        size: "64x64",
      },
      { recipeId: "fox", variables: { color: "red" }, size: "64x64" },
      { prompt: "[fail] no luck", size: "64x64" },
    ]) {
      const res = await server.api("/api/jobs/generate-image", { method: "POST", key: user.key, json: body });
      jobs.push((await expectStatus<{ jobId: string }>(res, 202)).jobId);
    }
    await expectStatus(
      await server.api("/api/tokens", { method: "POST", key: app.key, json: { userId: "ext-1" } }),
      201,
    );
    await waitFor(
      async () => {
        for (const id of jobs) {
          const s = await expectStatus<{ status: string }>(await server.api(`/api/jobs/${id}/status`), 200);
          if (!TERMINAL.includes(s.status)) return false;
        }
        return true;
      },
      { timeoutMs: 20_000, what: "the generations to end" },
    );
    // The webhooks of those jobs delivered, so their rows have attempts.
    await waitFor(
      async () => {
        const { deliveries } = await expectStatus<{ deliveries: { status: string }[] }>(
          await server.api("/api/webhooks/deliveries", { key: user.key }),
          200,
        );
        return deliveries.length >= 3 && deliveries.every((d) => d.status === "delivered");
      },
      { timeoutMs: 20_000, what: "the webhooks to be delivered" },
    );
  });

  afterAll(async () => {
    await server?.stop();
    receiver?.stop(true);
  });

  test("refuses while a server runs on the data dir, a bad or missing target URL, and a data dir without a database", async () => {
    const db = await database();
    const running = await runEasel(source.dir, ["migrate-data", "--to", db.url]);
    expectExit(running, 1);
    expect(running.stderr).toContain("stop it first");
    expect(await db.sql`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`).toEqual([
      { n: 0 },
    ]);
    const mysql = await runEasel(source.dir, ["migrate-data", "--to", "mysql://u:p@h/db"]);
    expectExit(mysql, 2);
    expect(mysql.stderr).toContain("--to must be a postgres://");
    expectExit(await runEasel(source.dir, ["migrate-data"]), 2);
    // A data dir without a database has nothing to copy, and is left without one.
    const empty = tempDir("easel-migrate-empty-");
    try {
      const nothing = await runEasel(empty.dir, ["migrate-data", "--to", db.url]);
      expectExit(nothing, 1);
      expect(nothing.stderr).toContain("no SQLite database at");
      expect(readdirSync(empty.dir)).toEqual([]);
    } finally {
      empty.cleanup();
    }
  });

  test("copies every table, prints and verifies the counts; every row is equal column by column", async () => {
    await server.stop();
    const db = await database();
    const run = await runEasel(source.dir, ["migrate-data", "--to", db.url]);
    expectExit(run, 0);
    const expected = await sqliteRows();
    const target = pgSql(db.sql);
    const copied = await allRows(target);
    for (const [table, rows] of Object.entries(expected)) {
      expect(run.stdout).toMatch(new RegExp(`^${table} +${rows.length}$`, "m"));
      expect({ table, rows: copied[table] }).toEqual({ table, rows });
    }
    expect(run.stdout).toContain("counts verified");
    expect(run.stdout).toContain("postgres://easel:***@"); // the password is never printed
    // The data is as the API made it: several users, both kinds of jobs, items, assets, ledger, cards…
    for (const table of [
      "users",
      "api_keys",
      "credit_ledger",
      "recipes",
      "recipe_usage",
      "jobs",
      "job_items",
      "assets",
      "cards",
      "webhook_endpoints",
      "webhook_deliveries",
      "job_counts",
    ])
      expect({ table, n: expected[table]!.length > 0 }).toEqual({ table, n: true });
    // The ledger invariant holds on the copy: credits equal the sum of their deltas.
    expect(
      await target.all(
        "SELECT u.id FROM users u LEFT JOIN credit_ledger l ON l.user_id = u.id GROUP BY u.id, u.credits HAVING u.credits <> coalesce(sum(l.delta), 0)",
      ),
    ).toEqual([]);

    // Again: the target has data now, refused untouched; --force replaces it, with the same result.
    const again = await runEasel(source.dir, ["migrate-data", "--to", db.url]);
    expectExit(again, 1);
    expect(again.stderr).toContain("already has data in users");
    expect(again.stderr).toContain("--force");
    const forced = await runEasel(source.dir, ["migrate-data", "--to", db.url, "--force"]);
    expectExit(forced, 0);
    expect(await allRows(target)).toEqual(expected);
  });

  test("a target that loses rows on the way fails the count check: exit 1, nothing committed", async () => {
    const db = await database();
    await migratePg(db.sql);
    // A rule an operator left on the target that silently drops some rows.
    await db.sql.unsafe(`CREATE FUNCTION drop_red() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.value = 'red' THEN RETURN NULL; END IF; RETURN NEW; END $$`);
    await db.sql.unsafe(
      "CREATE TRIGGER drop_red BEFORE INSERT ON recipe_usage FOR EACH ROW EXECUTE FUNCTION drop_red()",
    );
    const run = await runEasel(source.dir, ["migrate-data", "--to", db.url]);
    expectExit(run, 1);
    expect(run.stdout).toMatch(/^recipe_usage +\d+ +target \d+ +MISMATCH$/m);
    expect(run.stderr).toContain("nothing was committed");
    for (const table of tablesInCopyOrder()) {
      const [{ n }] = await db.sql.unsafe(`SELECT count(*)::int AS n FROM ${getTableName(table)}`);
      expect({ table: getTableName(table), n }).toEqual({ table: getTableName(table), n: 0 });
    }
  });
});
