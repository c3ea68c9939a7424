import type { Recipe, RecipeVariable } from "../../db/schema";
import { ApiError } from "../../errors";
import type { UsageRow } from "../recipes/service";
import { type VariableValues, valueSchema, valuesValidator } from "../recipes/service";

/** A source of uniform numbers in [0, 1); injected so draws can be reproduced in tests. */
export type Random = () => number;

/** An index drawn with probability weight / total; uniform when no weight is positive. */
export function weightedIndex(weights: number[], random: Random): number {
  const total = weights.reduce((sum, w) => sum + Math.max(0, w), 0);
  if (total <= 0) return Math.floor(random() * weights.length);
  let r = random() * total;
  for (let i = 0; i < weights.length; i++) {
    r -= Math.max(0, weights[i]!);
    if (r < 0) return i;
  }
  return weights.length - 1;
}

type Value = string | number;
type Weighted = { value: Value; weight: number };
/** Draws one variable's value; `undefined` leaves an optional variable unset. */
type Source = (random: Random) => Value | undefined;

/** Usage rows of one variable that are still valid values for it (a recipe may have changed since). */
function usageOf(v: RecipeVariable, usage: UsageRow[]): Weighted[] {
  const schema = valueSchema(v);
  const out: Weighted[] = [];
  for (const u of usage) {
    if (u.variable !== v.name) continue;
    const parsed = schema.safeParse(v.type === "number" ? Number(u.value) : u.value);
    if (parsed.success) out.push({ value: parsed.data, weight: u.count });
  }
  return out;
}

function weighted(choices: Weighted[]): Source {
  const weights = choices.map((c) => c.weight);
  return (random) => choices[weightedIndex(weights, random)]!.value;
}

/**
 * Where one variable's backlog values come from: the first of what users picked (usage counts as weights),
 * the recipe's options (their weights, 1 when unset), a uniform draw over a bounded number's [min, max], the
 * default, nothing (an optional variable). Throws NoInputsError for a required variable with none of these.
 */
function sourceOf(v: RecipeVariable, usage: UsageRow[]): Source {
  const used = usageOf(v, usage);
  if (used.length > 0) return weighted(used);
  if (v.options?.length) return weighted(v.options.map((o) => ({ value: o.value, weight: o.weight ?? 1 })));
  const { min, max } = v;
  if (v.type === "number" && min !== undefined && max !== undefined) {
    if (Number.isInteger(min) && Number.isInteger(max))
      return (random) => min + Math.floor(random() * (max - min + 1));
    return (random) => min + random() * (max - min);
  }
  const fallback = v.default;
  if (fallback !== undefined) return () => fallback;
  if (!v.required) return () => undefined;
  throw new NoInputsError(`variable '${v.name}' has no usage, options, bounds or default to draw from`);
}

/**
 * A drawer of full value sets for one recipe's backlog generations, each variable drawn on its own and the
 * set validated like a user's request. Built once per top-up; throws NoInputsError when the recipe has a
 * variable nothing can be drawn for, and each draw throws it when the drawn set is invalid.
 */
export function inputDrawer(
  recipe: Pick<Recipe, "variables">,
  usage: UsageRow[],
): (random: Random) => VariableValues {
  const sources = recipe.variables.map((v) => [v.name, sourceOf(v, usage)] as const);
  const validate = valuesValidator(recipe.variables);
  return (random) => {
    const values: VariableValues = {};
    for (const [name, source] of sources) {
      const value = source(random);
      if (value !== undefined) values[name] = value;
    }
    try {
      return validate(values);
    } catch (err) {
      if (err instanceof ApiError) throw new NoInputsError(`drawn values are invalid: ${err.message}`);
      throw err;
    }
  };
}

/** The backlog cannot make valid inputs for a recipe; it is skipped (and says why) until the recipe changes. */
export class NoInputsError extends Error {
  override name = "NoInputsError";
  readonly code = "backlog_no_inputs";
}
