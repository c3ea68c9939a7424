import { Elysia } from "elysia";
import type { Recipe } from "../../db/schema";
import type { Sql } from "../../db/sql";
import { authPlugin } from "../auth/plugin";
import { type AuthService, isAdminKey } from "../auth/service";
import type { BacklogService } from "../backlog/service";
import { routeDoc } from "../docs/model";
import { idempotencyPlugin } from "../idempotency/plugin";
import type { IdempotencyService } from "../idempotency/service";
import { CreateRecipeBody, PatchRecipeBody, RecipeIdParams, RecipeList, RecipeView } from "./model";
import { type RecipeService, recipeNotFound, recipeView } from "./service";

/** What this file needs from the services, and nothing more. */
type Deps = {
  auth: AuthService;
  backlog: Pick<BacklogService, "scheduleTopUp">;
  sql: Sql;
  idempotency: IdempotencyService;
  recipes: RecipeService;
};

/**
 * A recipe that is active and wants a backlog is topped up shortly after it is created or changed, instead of
 * on the next BACKLOG_CRON tick, so instant claims work within seconds of creating it.
 */
async function fillSoon(ctx: Pick<Deps, "backlog">, recipe: Recipe): Promise<Recipe> {
  if (recipe.active && recipe.backlogMin > 0) await ctx.backlog.scheduleTopUp(recipe.id);
  return recipe;
}

export const recipesModule = (ctx: Deps) =>
  new Elysia({ prefix: "/api", name: "recipes" })
    .use(authPlugin(ctx.auth))
    .use(idempotencyPlugin(ctx.idempotency))
    .get(
      "/recipes",
      async ({ principal }) => ({
        recipes: (await ctx.recipes.list({ includeInactive: isAdminKey(principal) })).map(recipeView),
      }),
      {
        auth: "token",
        response: { 200: RecipeList },
        detail: { tags: ["recipes"], summary: "Active recipes (admins: inactive ones too)" },
      },
    )
    .get(
      "/recipes/:id",
      async ({ principal, params }) => {
        const recipe = isAdminKey(principal)
          ? await ctx.recipes.get(params.id)
          : await ctx.recipes.active(params.id);
        if (!recipe) throw recipeNotFound();
        return recipeView(recipe);
      },
      {
        auth: "token",
        params: RecipeIdParams,
        response: { 200: RecipeView },
        detail: { tags: ["recipes"], summary: "A recipe with its variables" },
      },
    )
    .post(
      "/recipes",
      async ({ body, idem }) => {
        const recipe = await ctx.sql.transaction(async () => {
          const created = await ctx.recipes.create(body);
          await idem.commit(recipeView(created));
          return created;
        });
        return recipeView(await fillSoon(ctx, recipe));
      },
      {
        auth: ["admin"],
        idempotent: 201,
        body: CreateRecipeBody,
        response: { 201: RecipeView },
        detail: routeDoc({
          tags: ["recipes"],
          summary: "Create a recipe (admin)",
          requestExample: {
            id: "fox-avatar",
            name: "Fox avatar",
            promptTemplate: "a {{style}} portrait of a fox wearing a {{hat}}",
            variables: [
              {
                name: "style",
                type: "enum",
                options: [{ value: "watercolour", weight: 3 }, { value: "pixel art" }],
              },
              { name: "hat", type: "string", default: "beret", max: 40 },
            ],
            output: "square-1080",
            creditCost: 2,
            backlogMin: 5,
          },
        }),
      },
    )
    .patch(
      "/recipes/:id",
      async ({ params, body }) => recipeView(await fillSoon(ctx, await ctx.recipes.update(params.id, body))),
      {
        auth: ["admin"],
        params: RecipeIdParams,
        body: PatchRecipeBody,
        response: { 200: RecipeView },
        detail: routeDoc({
          tags: ["recipes"],
          summary: "Change a recipe; `active: false` retires it (admin)",
          requestExample: { backlogMin: 10, active: true },
        }),
      },
    );
