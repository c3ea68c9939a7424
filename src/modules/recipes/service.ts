import type { Recipe } from "../../db/schema";
import type { Sql } from "../../db/sql";
import { ApiError, conflict, unprocessable } from "../../errors";
import { ImageError } from "../../images/errors";
import { PresetRefSchema, resolvePreset } from "../../images/presets";
import { ProviderError } from "../../providers/errors";
import type { ProviderRegistry } from "../../providers/registry";
import type { GenerateService, RecipeExpansion } from "../generate/service";
import type { CreateRecipeBody, PatchRecipeBody, RecipeView } from "./model";
import { RecipeRepository, type UsageRow } from "./repository";
import { checkRecipe, renderPrompt, type VariableValues, valuesValidator } from "./variables";

// How a recipe's variables are validated is part of this module's public face (backlog and instant use it).
export { type VariableValues, valueSchema, valuesValidator } from "./variables";

export type RecipeDeps = {
  sql: Sql;
  providers: ProviderRegistry;
  /** BACKLOG_MIN: `backlogMin` of a recipe created without one. */
  defaultBacklogMin: number;
  now?: () => number;
};

export type { UsageRow } from "./repository";

/** How long `active()` trusts a recipe it read (changes by another process, e.g. the CLI, show within it). */
const ACTIVE_CACHE_MS = 1000;

export const recipeNotFound = () => new ApiError(404, "recipe_not_found", "no active recipe with that id");

/** A recipe as the API shows it. */
export function recipeView(r: Recipe): RecipeView {
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    provider: r.provider,
    model: r.model,
    promptTemplate: r.promptTemplate,
    negativePrompt: r.negativePrompt,
    variables: r.variables,
    output: r.output,
    size: r.size,
    creditCost: r.creditCost,
    backlogMin: r.backlogMin,
    active: r.active,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}

/** Recipes (prompt templates with typed variables) and what users pick for them (`recipe_usage`). */
export class RecipeService {
  readonly #d: RecipeDeps;
  readonly #now: () => number;
  readonly #recipes: RecipeRepository;
  /** Recipes by id as `active()` last read them: the claim and generate paths look one up on every request. */
  /** Active recipes by id, briefly, with their variables' validator built once. */
  readonly #cache = new Map<
    string,
    { recipe: Recipe; validate: (given: unknown) => VariableValues; at: number }
  >();

  constructor(deps: RecipeDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
    this.#recipes = new RecipeRepository(deps.sql);
  }

  list(opts: { includeInactive: boolean }): Promise<Recipe[]> {
    return this.#recipes.list(opts.includeInactive);
  }

  get(id: string): Promise<Recipe | null> {
    return this.#recipes.get(id);
  }

  /** The recipe if it exists and is active; 404 `recipe_not_found` otherwise. */
  async active(id: string): Promise<Recipe> {
    return (await this.#active(id)).recipe;
  }

  async #active(id: string) {
    const now = this.#now();
    let hit = this.#cache.get(id);
    if (!hit || now - hit.at > ACTIVE_CACHE_MS) {
      const recipe = await this.get(id);
      if (!recipe) throw recipeNotFound();
      hit = { recipe, validate: valuesValidator(recipe.variables), at: now };
      this.#cache.set(id, hit);
    }
    if (!hit.recipe.active) throw recipeNotFound();
    return hit;
  }

  async create(body: CreateRecipeBody): Promise<Recipe> {
    const now = this.#now();
    const row: Recipe = {
      id: body.id,
      name: body.name,
      description: body.description ?? null,
      provider: body.provider ?? this.#d.providers.defaultName,
      model: body.model ?? null,
      promptTemplate: body.promptTemplate,
      negativePrompt: body.negativePrompt ?? null,
      variables: body.variables,
      output: body.output ?? null,
      size: body.size ?? null,
      creditCost: body.creditCost,
      backlogMin: body.backlogMin ?? this.#d.defaultBacklogMin,
      active: body.active,
      createdAt: now,
      updatedAt: now,
    };
    this.#check(row);
    if (!(await this.#recipes.insert(row)))
      throw conflict("recipe_exists", `a recipe with id "${body.id}" already exists`);
    return row;
  }

  /** Applies a partial update (variables are replaced as a whole); the result is checked like a new recipe. */
  async update(id: string, patch: PatchRecipeBody): Promise<Recipe> {
    const current = await this.get(id);
    if (!current) throw recipeNotFound();
    const next: Recipe = { ...current, updatedAt: this.#now() };
    for (const [key, value] of Object.entries(patch)) {
      if (value !== undefined) (next as Record<string, unknown>)[key] = value;
    }
    this.#check(next);
    await this.#recipes.update(next);
    this.#cache.delete(id);
    return next;
  }

  /** A generation request's recipe: validated values, the rendered prompt and the settings it fixes. */
  async expand(id: string, given: unknown): Promise<RecipeExpansion> {
    const { recipe, validate } = await this.#active(id);
    return this.expansionOf(recipe, validate(given));
  }

  /** The expansion for values already validated (the backlog's draws). */
  expansionOf(recipe: Recipe, values: VariableValues): RecipeExpansion {
    return {
      recipeId: recipe.id,
      values,
      prompt: renderPrompt(recipe.promptTemplate, values),
      provider: recipe.provider,
      model: recipe.model,
      negativePrompt: recipe.negativePrompt,
      output: recipe.output === null ? null : PresetRefSchema.parse(recipe.output),
      size: recipe.size,
      creditCost: recipe.creditCost,
    };
  }

  /** Counts each chosen value once, in the caller's transaction (the enqueue or the claim). */
  async recordUsage(recipeId: string, values: VariableValues): Promise<void> {
    for (const [variable, value] of Object.entries(values))
      await this.#recipes.countUsage(recipeId, variable, String(value));
  }

  /** `recordUsage` for several generations at once: one statement, each distinct value counted once with its total. */
  async recordUsageMany(generations: readonly { recipeId: string; values: VariableValues }[]): Promise<void> {
    const counts = new Map<string, { recipeId: string; variable: string; value: string; n: number }>();
    for (const { recipeId, values } of generations) {
      for (const [variable, v] of Object.entries(values)) {
        const value = String(v);
        const key = JSON.stringify([recipeId, variable, value]);
        const row = counts.get(key);
        if (row) row.n++;
        else counts.set(key, { recipeId, variable, value, n: 1 });
      }
    }
    // In key order, so two groups on two instances upsert shared rows in the same order (no deadlock).
    const rows = [...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, row]) => row);
    await this.#recipes.countUsageMany(rows);
  }

  usage(recipeId: string): Promise<UsageRow[]> {
    return this.#recipes.usage(recipeId);
  }

  #check(r: Recipe): void {
    checkRecipe(r);
    try {
      this.#d.providers.get(r.provider);
      if (r.output !== null) resolvePreset(PresetRefSchema.parse(r.output));
    } catch (err) {
      if (err instanceof ProviderError) throw unprocessable(err.code, err.message);
      if (err instanceof ImageError) throw unprocessable(err.code, err.message, err.details);
      throw err;
    }
  }
}

/** Counts the values users choose for recipe generations, in each generation's enqueue transaction. */
export function recordRecipeUsage(generate: GenerateService, recipes: RecipeService): void {
  generate.onEnqueued(async (c) => {
    if (c.recipe) await recipes.recordUsage(c.recipe.recipeId, c.recipe.values);
  });
}
