import { Elysia } from "elysia";
import type { AppContext } from "../../context";
import type { Recipe } from "../../db/schema";
import { transaction } from "../../db/tx";
import { authPlugin } from "../auth/plugin";
import { isAdminKey } from "../auth/service";
import { idempotencyPlugin } from "../idempotency/plugin";
import { CreateRecipeBody, PatchRecipeBody, RecipeIdParams } from "./model";
import { recipeNotFound, recipeView } from "./service";

/**
 * A recipe that is active and wants a backlog is topped up shortly after it is created or changed, instead of
 * on the next BACKLOG_CRON tick, so instant claims work within seconds of creating it.
 */
function fillSoon(ctx: AppContext, recipe: Recipe): Recipe {
  if (recipe.active && recipe.backlogMin > 0) ctx.backlog.scheduleTopUp(recipe.id);
  return recipe;
}

export const recipesModule = (ctx: AppContext) =>
  new Elysia({ prefix: "/api", name: "recipes" })
    .use(authPlugin(ctx.auth))
    .use(idempotencyPlugin(ctx.idempotency))
    .get(
      "/recipes",
      ({ principal }) => ({
        recipes: ctx.recipes.list({ includeInactive: isAdminKey(principal) }).map(recipeView),
      }),
      {
        auth: "token",
        detail: { tags: ["recipes"], summary: "Active recipes (admins: inactive ones too)" },
      },
    )
    .get(
      "/recipes/:id",
      ({ principal, params }) => {
        const recipe = isAdminKey(principal) ? ctx.recipes.get(params.id) : ctx.recipes.active(params.id);
        if (!recipe) throw recipeNotFound();
        return recipeView(recipe);
      },
      {
        auth: "token",
        params: RecipeIdParams,
        detail: { tags: ["recipes"], summary: "A recipe with its variables" },
      },
    )
    .post(
      "/recipes",
      ({ body, idem }) => {
        const recipe = transaction(ctx.db.$client, () => {
          const created = ctx.recipes.create(body);
          idem.commit(recipeView(created));
          return created;
        });
        return recipeView(fillSoon(ctx, recipe));
      },
      {
        auth: ["admin"],
        idempotent: 201,
        body: CreateRecipeBody,
        detail: { tags: ["recipes"], summary: "Create a recipe (admin)" },
      },
    )
    .patch(
      "/recipes/:id",
      ({ params, body }) => recipeView(fillSoon(ctx, ctx.recipes.update(params.id, body))),
      {
        auth: ["admin"],
        params: RecipeIdParams,
        body: PatchRecipeBody,
        detail: { tags: ["recipes"], summary: "Change a recipe; `active: false` retires it (admin)" },
      },
    );
