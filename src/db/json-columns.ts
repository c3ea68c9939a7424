import { z } from "zod";

/**
 * The shapes of JSON columns that requests also write, declared once as zod schemas: the route validates
 * with the schema and the column's type is its `z.infer`.
 */

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
/** A recipe variable as stored in `recipes.variables` and as a request gives it. */
export type RecipeVariable = z.infer<typeof RecipeVariableSchema>;
