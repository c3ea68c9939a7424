import { z } from "zod";
import { RecipeVariableSchema, VARIABLE_TYPES } from "../../db/json-columns";
import { PresetRefSchema } from "../../images/presets";
import { Size } from "../generate/model";

export { RecipeVariableSchema, VARIABLE_TYPES } from "../../db/json-columns";
export type RecipeVariableInput = z.infer<typeof RecipeVariableSchema>;

const Slug = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "recipe ids are lowercase slugs: letters, digits, '-' and '_' (≤ 64)");

const RecipeFields = {
  name: z.string().trim().min(1).max(200),
  description: z.string().trim().max(2000).nullable().optional(),
  /** @defaultValue the server's default provider */
  provider: z.string().min(1).max(64).optional(),
  model: z.string().min(1).max(200).nullable().optional(),
  /** The prompt with `{{variable}}` placeholders; every placeholder must be a declared variable. */
  promptTemplate: z.string().trim().min(1).max(4000),
  negativePrompt: z.string().max(2000).nullable().optional(),
  variables: z.array(RecipeVariableSchema).max(50),
  output: PresetRefSchema.nullable().optional(),
  size: Size.nullable().optional(),
  /** Credits per image, charged on generation and on an instant claim. @defaultValue 1 */
  creditCost: z.number().int().min(0).max(1_000_000),
  /** Completed backlog generations kept ready for instant claims. @defaultValue BACKLOG_MIN */
  backlogMin: z.number().int().min(0).max(1000),
  active: z.boolean(),
};

export const CreateRecipeBody = z.strictObject({
  id: Slug,
  ...RecipeFields,
  variables: RecipeFields.variables.default([]),
  creditCost: RecipeFields.creditCost.default(1),
  backlogMin: RecipeFields.backlogMin.optional(),
  active: RecipeFields.active.default(true),
});
export type CreateRecipeBody = z.infer<typeof CreateRecipeBody>;

/** Any subset of the fields; `variables` replaces the whole list. */
export const PatchRecipeBody = z.strictObject(RecipeFields).partial();
export type PatchRecipeBody = z.infer<typeof PatchRecipeBody>;

export const RecipeIdParams = z.object({ id: z.string().min(1).max(64) });

/** A recipe as the API shows it (the variables as declared). */
export const RecipeView = z
  .object({
    id: z.string(),
    name: z.string(),
    description: z.string().nullable(),
    provider: z.string(),
    model: z.string().nullable(),
    promptTemplate: z.string(),
    negativePrompt: z.string().nullable(),
    variables: z.array(
      z.object({
        name: z.string(),
        type: z.enum(VARIABLE_TYPES),
        options: z.array(z.object({ value: z.string(), weight: z.number().optional() })).optional(),
        default: z.union([z.string(), z.number()]).optional(),
        required: z.boolean().optional(),
        min: z.number().optional(),
        max: z.number().optional(),
      }),
    ),
    output: z
      .union([z.string(), z.record(z.string(), z.unknown())])
      .nullable()
      .meta({ description: "Output preset name or inline preset; null: the server's default" }),
    size: z.string().nullable(),
    creditCost: z.number().int(),
    backlogMin: z.number().int(),
    active: z.boolean(),
    createdAt: z.number().int(),
    updatedAt: z.number().int(),
  })
  .meta({ title: "Recipe" });
export type RecipeView = z.infer<typeof RecipeView>;

export const RecipeList = z.object({ recipes: z.array(RecipeView) });
