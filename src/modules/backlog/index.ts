import { Elysia } from "elysia";
import { authPlugin } from "../auth/plugin";
import { type AuthService, isAdminKey } from "../auth/service";
import { RecipeIdParams } from "../recipes/model";
import { type RecipeService, recipeNotFound } from "../recipes/service";
import { BacklogView } from "./model";
import type { BacklogService } from "./service";

/** What this file needs from the services, and nothing more. */
type Deps = { auth: AuthService; backlog: BacklogService; recipes: RecipeService };

export const backlogModule = (ctx: Deps) =>
  new Elysia({ prefix: "/api", name: "backlog" }).use(authPlugin(ctx.auth)).get(
    "/recipes/:id/backlog",
    async ({ principal, params }) => {
      const recipe = isAdminKey(principal)
        ? await ctx.recipes.get(params.id)
        : await ctx.recipes.active(params.id);
      if (!recipe) throw recipeNotFound();
      const s = await ctx.backlog.status(recipe);
      return {
        min: s.min,
        ready: s.ready,
        inFlight: s.inFlight,
        deficit: s.deficit,
        oldestReadyAt: s.oldestReadyAt,
        active: s.active,
        failures: s.failures,
      };
    },
    {
      auth: true,
      params: RecipeIdParams,
      response: { 200: BacklogView },
      detail: {
        tags: ["recipes"],
        summary: "A recipe's backlog: ready, in flight, deficit, oldest ready, failure budget",
      },
    },
  );
