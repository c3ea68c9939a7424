import { z } from "zod";
import { PresetRefSchema } from "../../images/presets";
import { Size } from "../generate/model";

export const VARIABLE_TYPES = ["enum", "string", "number"] as const;

const VariableName = z
  .string()
  .regex(
    /^[A-Za-z_][A-Za-z0-9_]{0,63}$/,
    "variable names use letters, digits and '_' (not starting with a digit)",
  );

/** One `{{variable}}` of a recipe: its type, choices (weighted for the backlog), default and bounds. */
export const RecipeVariableSchema = z
  .strictObject({
    name: VariableName,
    type: z.enum(VARIABLE_TYPES),
    /** enum: the allowed values. string: suggestions the backlog draws from (users may give any string). */
    options: z
      .array(
        z.strictObject({
          value: z.string().trim().min(1).max(200),
          /** Relative weight when the backlog draws without usage data. @defaultValue 1 */
          weight: z.number().min(0).max(1_000_000).optional(),
        }),
      )
      .min(1)
      .max(200)
      .optional(),
    default: z.union([z.string().max(1000), z.number()]).optional(),
    /** A required variable without a default must be given. @defaultValue false */
    required: z.boolean().optional(),
    /** number: bounds of the value; string: bounds of its length. */
    min: z.number().optional(),
    max: z.number().optional(),
  })
  .superRefine((v, ctx) => {
    if (v.type === "enum" && !v.options)
      ctx.addIssue({ code: "custom", message: "an enum needs options", path: ["options"] });
    if (v.type === "number" && v.options)
      ctx.addIssue({ code: "custom", message: "a number takes min/max, not options", path: ["options"] });
    if (v.options && new Set(v.options.map((o) => o.value)).size !== v.options.length)
      ctx.addIssue({ code: "custom", message: "option values must be unique", path: ["options"] });
    if (v.min !== undefined && v.max !== undefined && v.min > v.max)
      ctx.addIssue({ code: "custom", message: "min is greater than max", path: ["min"] });
  });
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
