/**
 * `easel backlog …`, `easel credits …` and the cron scripts as child processes on a real data dir: status as
 * JSON and as a table, a dry run, `maintain --wait --process` generating in the CLI itself, `maintain --wait`
 * with a server on the same data dir doing the work, and credit grants by external id.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { silentLogger } from "../../src/log";
import type { BacklogStatus } from "../../src/modules/backlog/service";
import { CreateRecipeBody } from "../../src/modules/recipes/model";
import { createServices } from "../../src/services";
import { createRecipe } from "../fixtures/backlog";
import { expectExit, runBun, startTestServer, tempDir, testConfig } from "../helpers";

const run = (dataDir: string, cmd: string[]) => runBun(cmd, { DATA_DIR: dataDir, POLL_INTERVAL_MS: "25" });
const easel = async (dir: string, args: string[]) => run(dir, ["src/main.ts", ...args]);

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A data dir holding two recipes (fox: 2 ready wanted, owl: 1) and one user known as "ext-7". */
async function seededDir(): Promise<{ dir: string; userId: string }> {
  const tmp = tempDir("easel-backlog-cli-");
  cleanups.push(tmp.cleanup);
  const ctx = createServices(testConfig(tmp.dir), { log: silentLogger });
  try {
    for (const [id, backlogMin] of [
      ["fox", 2],
      ["owl", 1],
    ] as const) {
      await ctx.recipes.create(
        CreateRecipeBody.parse({
          id,
          name: id,
          promptTemplate: `a {{color}} ${id}`,
          variables: [{ name: "color", type: "enum", options: [{ value: "red" }, { value: "blue" }] }],
          backlogMin,
        }),
      );
    }
    const user = await ctx.users.create({ name: "seven", role: "user", externalId: "ext-7" });
    return { dir: tmp.dir, userId: user.id };
  } finally {
    ctx.db.$client.close();
  }
}

const statusOf = async (dir: string) => {
  const r = await easel(dir, ["backlog", "status", "--json"]);
  expectExit(r, 0);
  return Object.fromEntries(
    (JSON.parse(r.stdout) as { recipes: BacklogStatus[] }).recipes.map((s) => [s.recipeId, s]),
  );
};

describe("backlog CLI", () => {
  test("status --json and the table; a dry run queues nothing; --wait --process fills the backlog itself", async () => {
    const { dir } = await seededDir();
    const before = await statusOf(dir);
    expect(before.fox).toMatchObject({ min: 2, ready: 0, inFlight: 0, deficit: 2, oldestReadyAt: null });
    expect(before.owl).toMatchObject({ min: 1, deficit: 1 });
    expect(before.fox?.failures).toMatchObject({ consecutiveFailures: 0, paused: false });

    const table = await easel(dir, ["backlog", "status"]);
    expect(table.stdout.split("\n")[0]).toMatch(/^recipe\s+min\s+ready\s+in flight\s+deficit/);
    expect(table.stdout).toMatch(/fox\s+2\s+0\s+0\s+2\s+-\s+short \(2 missing\)/);

    const dry = await easel(dir, ["backlog", "maintain", "--dry-run", "--json"]);
    expectExit(dry, 0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, enqueued: 3 });
    expect((await statusOf(dir)).fox).toMatchObject({ inFlight: 0, deficit: 2 });

    const short = await run(dir, ["scripts/check-backlog-status.ts"]);
    expectExit(short, 1);
    // What it prints agrees with how it exits: nothing short is called "ok".
    expect(short.stdout).toMatch(/fox\s+2\s+0\s+0\s+2\s+-\s+short \(2 missing\)/);
    expect(short.stdout).not.toMatch(/\bok\b/);

    const filled = await easel(dir, [
      "backlog",
      "maintain",
      "--wait",
      "--process",
      "--timeout",
      "60",
      "--json",
    ]);
    expectExit(filled, 0);
    expect(JSON.parse(filled.stdout)).toMatchObject({ full: true, maintain: { enqueued: 3 } });
    const after = await statusOf(dir);
    expect(after.fox).toMatchObject({ ready: 2, inFlight: 0, deficit: 0 });
    expect(after.owl).toMatchObject({ ready: 1, deficit: 0 });
    expect(after.fox?.oldestReadyAt).toBeGreaterThan(0);

    const full = await run(dir, ["scripts/check-backlog-status.ts"]);
    expectExit(full, 0);
    expect(full.stdout).toMatch(/fox\s+2\s+2\s+0\s+0\s+\S+\s+ok/);
    const again = await run(dir, ["scripts/run-backlog-maintenance.ts", "--json"]);
    expectExit(again, 0);
    expect(JSON.parse(again.stdout)).toMatchObject({ enqueued: 0 });
  }, 60_000);

  test("maintain --wait leaves the work to a server running on the same data dir", async () => {
    const { dir } = await seededDir();
    // The server's own top-up after a recipe is created waits BACKLOG_TOPUP_DELAY_MS: long enough here that
    // the CLI, however slowly it starts on a loaded machine, is the one that queues the work.
    const server = await startTestServer({
      dir,
      env: { BACKLOG_CRON: "0 0 1 1 *", BACKLOG_TOPUP_DELAY_MS: "60000" },
    });
    try {
      await createRecipe(server.api, { id: "bee", backlogMin: 2 });
      const r = await easel(dir, ["backlog", "maintain", "--recipe", "bee", "--wait", "--timeout", "60"]);
      expectExit(r, 0);
      expect(r.stdout).toContain("bee: queued 2 of 2 missing");
      expect(r.stdout).toContain("backlog full");
      expect(await server.ctx.backlog.status((await server.ctx.recipes.get("bee"))!)).toMatchObject({
        ready: 2,
        inFlight: 0,
      });
      // Without --process the CLI runs nothing: the server generated these.
      const owners = server.ctx.db.$client
        .query("SELECT DISTINCT owner_id FROM jobs WHERE recipe_id = 'bee'")
        .all() as { owner_id: string }[];
      expect(owners.map((o) => o.owner_id)).toEqual([await server.ctx.backlog.systemUserId()]);
    } finally {
      await server.close();
    }
  }, 60_000);

  test("maintain for an unknown recipe fails cleanly; bad flags are usage errors", async () => {
    const { dir } = await seededDir();
    const unknown = await easel(dir, ["backlog", "maintain", "--recipe", "nope"]);
    expectExit(unknown, 1);
    expect(unknown.stderr).toContain("recipe_not_found");
    expectExit(await easel(dir, ["backlog", "maintain", "--wait", "--dry-run"]), 2);
    expectExit(await easel(dir, ["backlog", "frobnicate"]), 2);
  }, 30_000);
});

describe("credits CLI", () => {
  test("grant by external id, balance with the ledger, and a debit past the balance refused", async () => {
    const { dir, userId } = await seededDir();
    const granted = await easel(dir, ["credits", "grant", "ext-7", "5", "--note", "promo", "--json"]);
    expectExit(granted, 0);
    expect(JSON.parse(granted.stdout)).toEqual({ userId, credits: 5 });
    const refused = await easel(dir, ["credits", "debit", userId, "9"]);
    expectExit(refused, 1);
    expect(refused.stderr).toContain("insufficient_credits");
    const balance = await easel(dir, ["credits", "balance", userId, "--json"]);
    expect(JSON.parse(balance.stdout)).toMatchObject({
      credits: 5,
      ledger: [{ delta: 5, reason: "grant", note: "promo", balanceAfter: 5 }],
    });
    expectExit(await easel(dir, ["credits", "grant", "nobody", "5"]), 1);
  }, 30_000);
});
