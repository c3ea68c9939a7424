/**
 * Contract tests of the content repositories (recipes and their usage, backlog state, cards, generated
 * assets), each run on SQLite and on PostgreSQL through the same `Sql` calls the services make.
 */
import { describe, expect, test } from "bun:test";
import { insertStatement, rowAsInserted, rowEncoder } from "../../src/db/rows";
import { type Card, type Job, jobs, type Recipe } from "../../src/db/schema";
import { type Sql, UniqueViolation } from "../../src/db/sql";
import { BacklogRepository } from "../../src/modules/backlog/repository";
import { CardRepository } from "../../src/modules/cards/repository";
import { AssetRepository, type NewAsset } from "../../src/modules/generate/assets";
import { RecipeRepository } from "../../src/modules/recipes/repository";
import { repositoryBackends } from "./repository-backends";
import { T0 } from "./repository-rows";

describe.each(repositoryBackends())("content repositories on $name", (backend) => {
  test("recipes: insert once, JSON and booleans round-trip, update, only active ones listed by default", async () => {
    const { sql } = await backend.open();
    const repo = new RecipeRepository(sql);
    const portrait = recipe("portrait", { output: { format: "webp", width: 512 }, negativePrompt: "blurry" });
    const retired = recipe("retired", { active: false });
    expect(await repo.insert(portrait)).toBe(true);
    expect(await repo.insert(retired)).toBe(true);
    expect(await repo.insert({ ...portrait, name: "again" })).toBe(false);
    expect(await repo.get("portrait")).toEqual(portrait);
    expect((await repo.list(false)).map((r) => r.id)).toEqual(["portrait"]);
    expect((await repo.list(true)).map((r) => r.id)).toEqual(["portrait", "retired"]);
    const changed = {
      ...retired,
      active: true,
      creditCost: 7,
      variables: [],
      output: "thumb",
      updatedAt: T0 + 1,
    };
    await repo.update({ ...changed, createdAt: 1 });
    expect(await repo.get("retired")).toEqual(changed);
  });

  test("recipes: usage counts add up under concurrent choices, per variable and value", async () => {
    const db = await backend.open();
    const repo = new RecipeRepository(db.sql);
    await repo.insert(recipe("portrait"));
    const clients = backend.concurrentWriters ? [db.sql, await db.another()] : [db.sql];
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        new RecipeRepository(clients[i % clients.length]!).countUsage(
          "portrait",
          "style",
          i % 4 ? "oil" : "ink",
        ),
      ),
    );
    const usage = await repo.usage("portrait");
    expect(usage.sort((a, b) => a.value.localeCompare(b.value))).toEqual([
      { variable: "style", value: "ink", count: 10 },
      { variable: "style", value: "oil", count: 30 },
    ]);
  });

  test("backlog state: failures streak within the window, restart after it, and a success ends them", async () => {
    const { sql } = await backend.open();
    await new RecipeRepository(sql).insert(recipe("portrait"));
    const state = new BacklogRepository(sql);
    const error = JSON.stringify({ code: "boom", message: "failed", retryable: true, refundable: true });
    expect(await state.state("portrait")).toBeNull();
    await state.failed("portrait", T0, error, 1000);
    await state.failed("portrait", T0 + 500, error, 1000);
    expect(await state.state("portrait")).toMatchObject({
      consecutive_failures: 2,
      last_failure_at: T0 + 500,
    });
    expect(JSON.parse((await state.state("portrait"))!.last_error!)).toEqual(JSON.parse(error));
    await state.failed("portrait", T0 + 5000, error, 1000);
    expect((await state.state("portrait"))?.consecutive_failures).toBe(1);
    await state.succeeded("portrait", T0 + 6000);
    expect(await state.state("portrait")).toMatchObject({
      consecutive_failures: 0,
      last_failure_at: T0 + 5000,
    });
  });

  test("cards: insert, bump returns the new version, pages, point only forwards, render errors as JSON", async () => {
    const db = await backend.open();
    const repo = new CardRepository(db.sql);
    const a = card("owner-1", { question: "Tea?", options: [{ label: "yes", votes: 1 }] });
    const b = card("owner-2", { question: "Coffee?" });
    await repo.insert(a);
    await repo.insert(b);
    expect(await repo.insert(a).catch((e) => e)).toBeInstanceOf(UniqueViolation);
    expect(await repo.get(a.id)).toEqual(a);
    const bumped = await repo.bump(a.id, { question: "Tea now?", n: 2 }, T0 + 2000, T0 + 10);
    expect(bumped).toEqual({
      ...a,
      data: { question: "Tea now?", n: 2 },
      version: 2,
      renderDueAt: T0 + 2000,
      updatedAt: T0 + 10,
    });
    expect(await repo.bump("missing", {}, 0, 0)).toBeNull();
    expect(
      (await repo.page({ ownerId: null, template: "poll", before: null, limit: 10 })).map((c) => c.id),
    ).toEqual([b.id, a.id]);
    expect(await repo.page({ ownerId: "owner-1", template: null, before: null, limit: 10 })).toEqual([
      bumped!,
    ]);
    expect(await repo.page({ ownerId: null, template: null, before: b.id, limit: 10 })).toEqual([bumped!]);
    // Concurrent renders of versions 1 and 2: whichever lands last, the card ends on version 2.
    const other = await db.another();
    await Promise.all([
      new CardRepository(other).point(a.id, 2, "cards/a-2.png", "https://x/a-2.png"),
      repo.point(a.id, 1, "cards/a-1.png", "https://x/a-1.png"),
    ]);
    expect(await repo.imageKey(a.id)).toBe("cards/a-2.png");
    expect(await repo.point(a.id, 2, "cards/again.png", "https://x/again.png")).toBe(false);
    const error = { code: "render_failed", message: "font", retryable: false, refundable: false };
    await repo.renderFailed(a.id, error);
    expect((await repo.get(a.id))?.renderError).toEqual(error);
    await repo.delete(b.id);
    expect(await repo.get(b.id)).toBeNull();
  });

  test("assets: upsert keeps one row per storage key, transfer returns the rows, delete returns the keys", async () => {
    const { sql } = await backend.open();
    const repo = new AssetRepository(sql);
    const job = await insertJob(sql);
    const first = await repo.upsert(asset(job.id, 0, "gen/a.png", "gen/a-thumb.webp"), "asset-a", T0);
    expect(first).toBe("asset-a");
    // A retried item rewrites the same key: the same row, with what the retry wrote.
    expect(await repo.upsert({ ...asset(job.id, 0, "gen/a.png", null), bytes: 99 }, "asset-a2", T0 + 1)).toBe(
      "asset-a",
    );
    await repo.upsert(asset(job.id, 1, "gen/b.png", "gen/b-thumb.webp"), "asset-b", T0);
    const rows = await repo.forJob(job.id);
    expect(rows.map((r) => [r.id, r.itemIdx, r.bytes, r.thumbnailKey])).toEqual([
      ["asset-a", 0, 99, null],
      ["asset-b", 1, 10, "gen/b-thumb.webp"],
    ]);
    expect((await repo.transferJob(job.id, "new-owner")).map((r) => r.ownerId)).toEqual([
      "new-owner",
      "new-owner",
    ]);
    await new CardRepository(sql).insert({ ...card("o", {}), imageKey: "cards/c.png" });
    expect(
      (await repo.referenced(["gen/a.png", "gen/b-thumb.webp", "cards/c.png", "gen/none.png"])).sort(),
    ).toEqual(["cards/c.png", "gen/a.png", "gen/b-thumb.webp"]);
    const taken = await repo.deleteForJobs([job.id]);
    expect(taken.flatMap((r) => [r.storage_key, r.thumbnail_key]).sort()).toEqual([
      "gen/a.png",
      "gen/b-thumb.webp",
      "gen/b.png",
      null,
    ]);
    expect(await repo.forJob(job.id)).toEqual([]);
  });
});

function recipe(id: string, over: Partial<Recipe> = {}): Recipe {
  return {
    id,
    name: `Recipe ${id}`,
    description: null,
    provider: "placeholder",
    model: null,
    promptTemplate: "a {{style}} portrait",
    negativePrompt: null,
    variables: [{ name: "style", type: "enum", options: [{ value: "oil", weight: 2 }, { value: "ink" }] }],
    output: null,
    size: "512x512",
    creditCost: 2,
    backlogMin: 3,
    active: true,
    createdAt: T0,
    updatedAt: T0,
    ...over,
  };
}

function card(ownerId: string, data: unknown): Card {
  return {
    id: Bun.randomUUIDv7(),
    ownerId,
    template: "poll",
    data,
    version: 1,
    renderedVersion: 0,
    imageKey: null,
    imageUrl: null,
    renderError: null,
    renderDueAt: null,
    createdAt: T0,
    updatedAt: T0,
  };
}

function asset(jobId: string, itemIdx: number, storageKey: string, thumbnailKey: string | null): NewAsset {
  return {
    jobId,
    itemIdx,
    ownerId: "owner-1",
    storageKey,
    thumbnailKey,
    contentType: "image/png",
    bytes: 10,
    width: 8,
    height: 8,
  };
}

/** A finished job row for assets to belong to (the queue owns `jobs`; a test may write its rows). */
async function insertJob(sql: Sql): Promise<Job> {
  const job = rowAsInserted(jobs)({
    id: Bun.randomUUIDv7(),
    type: "generate",
    status: "completed",
    input: { prompt: "x" },
    maxAttempts: 1,
    runAt: T0,
    createdAt: T0,
    updatedAt: T0,
    finishedAt: T0,
  });
  await sql.run(insertStatement(jobs), rowEncoder(jobs)(job));
  return job;
}
