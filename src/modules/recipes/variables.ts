import { z } from "zod";
import type { Recipe, RecipeVariable } from "../../db/schema";
import { unprocessable } from "../../errors";
import { describeIssues } from "../../validation";

export type VariableValues = Record<string, string | number>;

const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

/** The variable names a template refers to, in order of first use. */
export function placeholders(template: string): string[] {
  return [...new Set([...template.matchAll(PLACEHOLDER)].map((m) => m[1]!))];
}

/** A number given as a JSON number or as numeric text (multipart fields, usage rows). */
const numeric = (x: unknown) =>
  typeof x === "string" && x.trim() !== "" && Number.isFinite(Number(x)) ? Number(x) : x;

/** The schema of one variable's value (no default, no optionality). */
export function valueSchema(v: RecipeVariable): z.ZodType<string | number> {
  switch (v.type) {
    case "enum":
      return z.enum((v.options ?? []).map((o) => o.value) as [string, ...string[]]);
    case "string":
      return z
        .string()
        .trim()
        .min(v.min ?? 1)
        .max(v.max ?? 500);
    case "number": {
      let n = z.number();
      if (v.min !== undefined) n = n.min(v.min);
      if (v.max !== undefined) n = n.max(v.max);
      return z.preprocess(numeric, n) as z.ZodType<number>;
    }
  }
}

/** A recipe's variables as one strict object schema: unknown names refused, defaults filled in. */
export function variablesSchema(variables: RecipeVariable[]): z.ZodType<VariableValues> {
  const shape: Record<string, z.ZodType> = {};
  for (const v of variables) {
    const value = valueSchema(v);
    shape[v.name] =
      v.default !== undefined ? value.default(v.default as never) : v.required ? value : value.optional();
  }
  return z.strictObject(shape) as unknown as z.ZodType<VariableValues>;
}

/**
 * A validator of user-given values for a recipe's variables (its schema built once: RecipeService caches it
 * with the recipe): 422 `invalid_variables` naming the first bad variable.
 */
export function valuesValidator(variables: RecipeVariable[]): (given: unknown) => VariableValues {
  const schema = variablesSchema(variables);
  return (given) => {
    const parsed = schema.safeParse(given ?? {});
    if (parsed.success) return dropUndefined(parsed.data);
    const details = describeIssues(parsed.error.issues, schema, given ?? {}).map((p) => ({
      variable: p.path,
      message:
        p.code === "unknown_field" ? p.message.replace("unknown field", "unknown variable") : p.message,
    }));
    const first = details[0]!;
    throw unprocessable("invalid_variables", `variable '${first.variable}': ${first.message}`, details);
  };
}

function dropUndefined(values: VariableValues): VariableValues {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined));
}

/** The template with each `{{name}}` replaced by its value (an unset optional variable by nothing). */
export function renderPrompt(template: string, values: VariableValues): string {
  return template
    .replace(PLACEHOLDER, (_, name: string) => String(values[name] ?? ""))
    .replace(/ {2,}/g, " ")
    .trim();
}

/**
 * Checks a recipe as a whole (the body schema checks each variable alone): unique names, every placeholder
 * declared, each default valid for its own variable. 422 `invalid_recipe` naming the problem.
 */
export function checkRecipe(r: Pick<Recipe, "promptTemplate" | "variables">): void {
  const names = r.variables.map((v) => v.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw unprocessable("invalid_recipe", `variable '${dup}' is declared twice`);
  const unknown = placeholders(r.promptTemplate).find((p) => !names.includes(p));
  if (unknown)
    throw unprocessable(
      "invalid_recipe",
      `the template uses {{${unknown}}}, which is not a declared variable`,
    );
  for (const v of r.variables) {
    if (v.default === undefined) continue;
    const ok = valueSchema(v).safeParse(v.default);
    if (!ok.success)
      throw unprocessable(
        "invalid_recipe",
        `variable '${v.name}': default ${JSON.stringify(v.default)} is not a valid value`,
      );
  }
}
