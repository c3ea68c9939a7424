/**
 * Backlog maintenance on a real SQLite file with the worker pool stopped, so every job it queues stays in
 * flight: it tops up to backlog_min and no further (twice in a row, with ready and in-flight jobs counted),
 * honours the concurrency cap across recipes, skips inactive recipes, and draws inputs by weight — checked
 * over 10,000 seeded draws.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { AppContext } from "../../src/context";
import { silentLogger } from "../../src/log";
import { inputDrawer } from "../../src/modules/backlog/pick";
import { BACKLOG_PRIORITY, BacklogService } from "../../src/modules/backlog/service";
import { CreateRecipeBody } from "../../src/modules/recipes/model";
import { createServices } from "../../src/services";
import { seededRandom, seedReadyBacklog } from "../fixtures/backlog";
import { tempDir, testConfig } from "../helpers";

const fox = (id: string, extra: Record<string, unknown> = {}) =>
  CreateRecipeBody.parse({
    id,
    name: id,
    promptTemplate: "a {{color}} fox",
    variables: [{ name: "color", type: "enum", options: [{ value: "red" }, { value: "blue" }] }],
    backlogMin: 3,
    ...extra,
  });

describe("backlog maintenance", () => {
  const tmp = tempDir();
  let ctx: AppContext;
  beforeAll(() => {
    ctx = createServices(testConfig(tmp.dir, { BACKLOG_MAX_CONCURRENT: "5" }), { log: silentLogger });
  });
  afterAll(() => {
    ctx.db.$client.close();
    tmp.cleanup();
  });

  const backlogJobs = (recipeId: string) =>
    ctx.db.$client
      .query("SELECT * FROM jobs WHERE recipe_id = ? AND type = 'generate' AND status = 'queued'")
      .all(recipeId) as { owner_id: string; priority: number; metadata: string }[];
  const cancelAll = async (recipeId: string) => {
    const rows = ctx.db.$client
      .query("SELECT id FROM jobs WHERE recipe_id = ? AND status = 'queued'")
      .all(recipeId) as { id: string }[];
    for (const r of rows) await ctx.queue.cancel(r.id);
  };

  test("tops a recipe up to backlog_min and no further: the second run counts the first's jobs", async () => {
    await ctx.recipes.create(fox("alpha"));
    const first = await ctx.backlog.maintain({ recipeId: "alpha" });
    expect(first.recipes[0]).toMatchObject({ recipeId: "alpha", enqueued: 3, deficit: 3 });
    const second = await ctx.backlog.maintain({ recipeId: "alpha" });
    expect(second.recipes[0]).toMatchObject({ enqueued: 0, deficit: 0 });
    const jobs = backlogJobs("alpha");
    expect(jobs).toHaveLength(3);
    for (const j of jobs) {
      expect(j.owner_id).toBe(await ctx.backlog.systemUserId());
      expect(j.priority).toBe(BACKLOG_PRIORITY);
      expect(JSON.parse(j.metadata)).toMatchObject({ keep: true, backlog: true });
    }
    expect(await ctx.backlog.status((await ctx.recipes.get("alpha"))!)).toMatchObject({
      min: 3,
      ready: 0,
      inFlight: 3,
      deficit: 0,
    });
    await cancelAll("alpha");
  });

  test("ready generations count towards the minimum", async () => {
    await ctx.recipes.create(fox("beta"));
    await seedReadyBacklog(ctx, "beta", 2);
    const run = await ctx.backlog.maintain({ recipeId: "beta" });
    expect(run.recipes[0]).toMatchObject({ enqueued: 1, deficit: 1 });
    expect(await ctx.backlog.status((await ctx.recipes.get("beta"))!)).toMatchObject({
      ready: 2,
      inFlight: 1,
      deficit: 0,
    });
    await cancelAll("beta");
  });

  test("never more than BACKLOG_MAX_CONCURRENT in flight over all recipes", async () => {
    for (const id of ["alpha", "beta"]) await ctx.recipes.update(id, { active: false });
    await ctx.recipes.create(fox("gamma"));
    await ctx.recipes.create(fox("delta"));
    const run = await ctx.backlog.maintain();
    expect(run.enqueued).toBe(5);
    expect(run.inFlight).toBe(5);
    expect(run.recipes.some((r) => r.skipped === "concurrency_cap")).toBe(true);
    expect((await ctx.backlog.maintain()).enqueued).toBe(0);
    await cancelAll("gamma");
    const after = await ctx.backlog.maintain();
    expect(after.inFlight).toBe(5);
    expect(backlogJobs("gamma").length + backlogJobs("delta").length).toBe(5);
    for (const id of ["gamma", "delta"]) await cancelAll(id);
  });

  test("inactive recipes and recipes with backlog_min 0 are skipped", async () => {
    for (const id of ["gamma", "delta"]) await ctx.recipes.update(id, { active: false });
    await ctx.recipes.create(fox("retired", { active: false }));
    await ctx.recipes.create(fox("none", { backlogMin: 0 }));
    const run = await ctx.backlog.maintain();
    expect(run.enqueued).toBe(0);
    expect(run.recipes).toEqual([]);
    expect(backlogJobs("retired")).toHaveLength(0);
  });

  test("a dry run draws inputs and reports them without queueing anything", async () => {
    await ctx.recipes.create(fox("dry"));
    const run = await ctx.backlog.maintain({ recipeId: "dry", dryRun: true });
    expect(run.recipes[0]).toMatchObject({ enqueued: 3, jobIds: [] });
    expect(run.recipes[0]?.inputs).toHaveLength(3);
    expect(backlogJobs("dry")).toHaveLength(0);
    await ctx.recipes.update("dry", { active: false });
  });

  test("a required variable with nothing to draw from skips the recipe until users have picked values", async () => {
    await ctx.recipes.create(
      CreateRecipeBody.parse({
        id: "named",
        name: "named",
        promptTemplate: "a fox called {{name}}",
        variables: [{ name: "name", type: "string", required: true }],
      }),
    );
    const skipped = await ctx.backlog.maintain({ recipeId: "named" });
    expect(skipped.recipes[0]).toMatchObject({ enqueued: 0, skipped: "no_inputs" });
    expect(skipped.recipes[0]?.reason).toContain("'name'");
    await ctx.recipes.recordUsage("named", { name: "Rusty" });
    const run = await ctx.backlog.maintain({ recipeId: "named" });
    expect(run.recipes[0]?.inputs).toEqual([{ name: "Rusty" }, { name: "Rusty" }, { name: "Rusty" }]);
    expect((await ctx.queue.items(run.recipes[0]!.jobIds[0]!))[0]?.input).toMatchObject({
      prompt: "a fox called Rusty",
    });
    await cancelAll("named");
  });

  test("the service draws with the injected random source", async () => {
    const last = await new BacklogService(
      {
        sql: ctx.sql,
        queue: ctx.queue,
        recipes: ctx.recipes,
        generate: ctx.generate,
        users: ctx.users,
      },
      { maxConcurrent: 100, failureLimit: 3, failureCooldownMs: 1000, topUpDelayMs: 0, random: () => 0.999 },
    );
    await ctx.recipes.update("dry", { active: true });
    const run = await last.maintain({ recipeId: "dry", dryRun: true });
    expect(run.recipes[0]?.inputs).toEqual([{ color: "blue" }, { color: "blue" }, { color: "blue" }]);
  });
});

describe("weighted input choice", () => {
  const recipe = {
    variables: [
      {
        name: "color",
        type: "enum" as const,
        options: [
          { value: "red", weight: 3 },
          { value: "blue", weight: 1 },
          { value: "green" },
          { value: "gold" },
        ],
      },
      { name: "size", type: "number" as const, min: 1, max: 4 },
    ],
  };
  const DRAWS = 10_000;

  function frequencies(usage: { variable: string; value: string; count: number }[], variable: string) {
    const random = seededRandom(42);
    const draw = inputDrawer(recipe, usage);
    const counts: Record<string, number> = {};
    for (let i = 0; i < DRAWS; i++) {
      const v = String(draw(random)[variable]);
      counts[v] = (counts[v] ?? 0) + 1;
    }
    return Object.fromEntries(Object.entries(counts).map(([k, n]) => [k, n / DRAWS]));
  }

  const expectClose = (actual: Record<string, number>, expected: Record<string, number>) => {
    expect(Object.keys(actual).sort()).toEqual(Object.keys(expected).sort());
    for (const [k, p] of Object.entries(expected)) expect(Math.abs((actual[k] ?? 0) - p)).toBeLessThan(0.02);
  };

  test("usage counts are the weights, over 10,000 seeded draws; values no longer valid are ignored", () => {
    const usage = [
      { variable: "color", value: "red", count: 60 },
      { variable: "color", value: "blue", count: 30 },
      { variable: "color", value: "green", count: 10 },
      { variable: "color", value: "purple", count: 500 },
      { variable: "size", value: "2", count: 1 },
    ];
    expectClose(frequencies(usage, "color"), { red: 0.6, blue: 0.3, green: 0.1 });
    expectClose(frequencies(usage, "size"), { "2": 1 });
  });

  test("without usage, the recipe's option weights (1 when unset); a bounded number is uniform", () => {
    expectClose(frequencies([], "color"), { red: 0.5, blue: 1 / 6, green: 1 / 6, gold: 1 / 6 });
    expectClose(frequencies([], "size"), { "1": 0.25, "2": 0.25, "3": 0.25, "4": 0.25 });
  });

  test("the same seed draws the same sequence", () => {
    const a = seededRandom(7);
    const b = seededRandom(7);
    const draw = inputDrawer(recipe, []);
    const draws = (r: () => number) => Array.from({ length: 50 }, () => draw(r));
    expect(draws(a)).toEqual(draws(b));
  });
});
