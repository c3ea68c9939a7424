/**
 * Recipes over real HTTP: CRUD (admin writes, everyone reads active ones), whole-recipe checks (placeholders,
 * defaults, provider, enum options), and generating from a recipe: the prompt rendered from the template,
 * variables validated against the recipe (422 naming the variable), usage recorded in the enqueue transaction.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { RecipeView } from "../../src/modules/recipes/model";
import { createUser, expectLedgerInvariants, expectStatus } from "../fixtures/backlog";
import { startTestServer, type TestServer, waitFor } from "../helpers";

type Recipe = RecipeView;
type ErrorBody = { error: { code: string; message: string; details?: { variable: string }[] } };

const avatar = {
  id: "avatar",
  name: "Avatar",
  description: "A portrait in a style",
  promptTemplate: "portrait of a {{animal}}, {{style}} style, {{count}} accessories {{extra}}",
  variables: [
    {
      name: "animal",
      type: "enum",
      required: true,
      options: [{ value: "cat", weight: 2 }, { value: "dog" }],
    },
    { name: "style", type: "string", default: "watercolor", max: 40 },
    { name: "count", type: "number", default: 1, min: 0, max: 5 },
    { name: "extra", type: "string" },
  ],
  output: "square-1080",
  size: "512x512",
  creditCost: 2,
};

describe("recipes", () => {
  let server: TestServer;
  let user: { id: string; key: string };
  beforeAll(async () => {
    server = await startTestServer({ env: { BACKLOG_MIN: "4", BACKLOG_CRON: "0 0 1 1 *" } });
    user = await createUser(server.api, { credits: 100 });
    await expectStatus(await server.api("/api/recipes", { method: "POST", json: avatar }), 201);
  });
  afterAll(() => server.close());
  afterEach(() => expectLedgerInvariants(server.ctx.db.$client));

  const create = (body: Record<string, unknown>, key?: string) =>
    server.api("/api/recipes", { method: "POST", json: body, ...(key && { key }) });
  const generate = (body: Record<string, unknown>) =>
    server.api("/api/jobs/generate-image", { method: "POST", key: user.key, json: body });
  const base = {
    name: "R",
    promptTemplate: "a {{x}}",
    variables: [{ name: "x", type: "string", default: "fox" }],
  };

  test("an admin creates a recipe; defaults fill provider and backlog_min; anyone with a key reads it", async () => {
    const got = await expectStatus<Recipe>(await server.api("/api/recipes/avatar", { key: user.key }), 200);
    expect(got).toMatchObject({
      id: "avatar",
      provider: "placeholder",
      backlogMin: 4,
      creditCost: 2,
      active: true,
    });
    const list = await expectStatus<{ recipes: Recipe[] }>(
      await server.api("/api/recipes", { key: user.key }),
      200,
    );
    expect(list.recipes.map((r) => r.id)).toContain("avatar");
  });

  test("only admins write recipes; ids are unique", async () => {
    await expectStatus(await create({ ...base, id: "mine" }, user.key), 403);
    await expectStatus(await create({ ...base, id: "dup" }), 201);
    expect((await expectStatus<ErrorBody>(await create({ ...base, id: "dup" }), 409)).error.code).toBe(
      "recipe_exists",
    );
  });

  test("a recipe is checked as a whole: placeholders, defaults, options, provider, slug", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ ...base, id: "r1", promptTemplate: "a {{y}}" }, "{{y}}"],
      [{ ...base, id: "r2", variables: [{ name: "x", type: "enum" }] }, "enum needs options"],
      [{ ...base, id: "r3", variables: [{ name: "x", type: "number", default: 9, max: 5 }] }, "default 9"],
      [{ ...base, id: "r4", variables: [base.variables[0], base.variables[0]] }, "declared twice"],
      [{ ...base, id: "r5", provider: "no-such-provider" }, "no-such-provider"],
      [{ ...base, id: "Not A Slug" }, "slug"],
    ];
    for (const [body, fragment] of cases) {
      const err = await expectStatus<ErrorBody>(await create(body), 422);
      expect(JSON.stringify(err.error)).toContain(fragment);
    }
  });

  test("PATCH changes a recipe; an inactive recipe is hidden from users and cannot be used", async () => {
    await expectStatus(await create({ ...base, id: "retiring" }), 201);
    const patched = await expectStatus<Recipe>(
      await server.api("/api/recipes/retiring", { method: "PATCH", json: { name: "Old", active: false } }),
      200,
    );
    expect(patched).toMatchObject({ name: "Old", active: false });
    await expectStatus(await server.api("/api/recipes/retiring", { key: user.key }), 404);
    const list = await expectStatus<{ recipes: Recipe[] }>(
      await server.api("/api/recipes", { key: user.key }),
      200,
    );
    expect(list.recipes.map((r) => r.id)).not.toContain("retiring");
    const all = await expectStatus<{ recipes: Recipe[] }>(await server.api("/api/recipes"), 200);
    expect(all.recipes.map((r) => r.id)).toContain("retiring");
    expect((await expectStatus<ErrorBody>(await generate({ recipeId: "retiring" }), 404)).error.code).toBe(
      "recipe_not_found",
    );
    await expectStatus(
      await server.api("/api/recipes/retiring", { method: "PATCH", json: { promptTemplate: "a {{nope}}" } }),
      422,
    );
  });

  test("generating from a recipe renders its prompt with defaults and records the chosen values", async () => {
    const { jobId } = await expectStatus<{ jobId: string }>(
      await generate({ recipeId: "avatar", variables: { animal: "dog", count: 3 } }),
      202,
    );
    const job = (await server.ctx.queue.get(jobId))!;
    expect(job.recipeId).toBe("avatar");
    expect(job.creditsCharged).toBe(2);
    expect(job.input).toMatchObject({ provider: "placeholder", output: "square-1080", size: "512x512" });
    expect((await server.ctx.queue.items(jobId))[0]?.input).toMatchObject({
      prompt: "portrait of a dog, watercolor style, 3 accessories",
    });
    expect(job.metadata).toMatchObject({ recipeVariables: { animal: "dog", style: "watercolor", count: 3 } });
    const usage = Object.fromEntries(
      (await server.ctx.recipes.usage("avatar")).map((u) => [`${u.variable}=${u.value}`, u.count]),
    );
    expect(usage).toMatchObject({ "animal=dog": 1, "style=watercolor": 1, "count=3": 1 });
    await expectStatus(await generate({ recipeId: "avatar", variables: { animal: "dog" } }), 202);
    expect((await server.ctx.recipes.usage("avatar")).find((u) => u.value === "dog")?.count).toBe(2);
  });

  test("bad variables are 422 naming the variable, and nothing is queued, charged or counted", async () => {
    const before = await server.ctx.recipes.usage("avatar");
    const balance = await server.ctx.credits.balance(user.id);
    const cases: [Record<string, unknown>, string][] = [
      [{ animal: "horse" }, "animal"],
      [{}, "animal"],
      [{ animal: "cat", count: 9 }, "count"],
      [{ animal: "cat", count: "many" }, "count"],
      [{ animal: "cat", style: "x".repeat(41) }, "style"],
      [{ animal: "cat", mood: "happy" }, "mood"],
    ];
    for (const [variables, name] of cases) {
      const err = await expectStatus<ErrorBody>(await generate({ recipeId: "avatar", variables }), 422);
      expect(err.error.code).toBe("invalid_variables");
      expect(err.error.message).toStartWith(`variable '${name}'`);
    }
    expect(await server.ctx.recipes.usage("avatar")).toEqual(before);
    expect(await server.ctx.credits.balance(user.id)).toBe(balance);
  });

  test("a recipe request may not also set the prompt, provider or model; variables need a recipe", async () => {
    await expectStatus(
      await generate({ recipeId: "avatar", prompt: "x", variables: { animal: "cat" } }),
      422,
    );
    await expectStatus(await generate({ recipeId: "avatar", provider: "placeholder" }), 422);
    await expectStatus(await generate({ prompt: "x", variables: { animal: "cat" } }), 422);
  });
  // Other recipes here want 4 each, so the concurrency cap turns the new one away at first: it is served as
  // soon as a backlog generation frees a slot.
  test("creating a recipe fills its backlog within seconds, without waiting for BACKLOG_CRON", async () => {
    await expectStatus(
      await server.api("/api/recipes", {
        method: "POST",
        json: { id: "quick", name: "Quick", promptTemplate: "a quick sketch", backlogMin: 2 },
      }),
      201,
    );
    const backlog = await waitFor(
      async () => {
        const b = (await (await server.api("/api/recipes/quick/backlog")).json()) as {
          min: number;
          ready: number;
        };
        return b.ready >= 2 ? b : null;
      },
      { timeoutMs: 20_000, what: "the new recipe's backlog to fill" },
    );
    expect(backlog).toMatchObject({ min: 2, ready: 2 });
  }, 30_000);
});
