import { z } from "zod";
import { PresetRefSchema } from "../../images/presets";

export const Size = z
  .string()
  .regex(/^\d{2,5}x\d{2,5}$/, "size must be WIDTHxHEIGHT, e.g. 1024x1024")
  .refine(
    (s) => s.split("x").every((v) => Number(v) >= 64 && Number(v) <= 4096),
    "each side must be 64-4096",
  );

const Prompt = z.string().trim().min(1).max(4000);

/** Largest `metadata` accepted, serialized: enough for an app's ids and labels, not a place for payloads. */
export const MAX_METADATA_BYTES = 16 * 1024;

/** Keys Easel itself keeps in a job's metadata (retention, backlog, instant claims); callers may not set them. */
export const RESERVED_METADATA_KEYS = [
  "keep",
  "backlog",
  "instant",
  "claimedAt",
  "generatedAt",
  "recipeVariables",
];

/** The caller's free JSON about a job, handed back with it. */
export const Metadata = z
  .record(z.string(), z.unknown())
  .refine((m) => Buffer.byteLength(JSON.stringify(m)) <= MAX_METADATA_BYTES, {
    message: `metadata is larger than ${MAX_METADATA_BYTES} bytes serialized`,
  })
  .refine((m) => !RESERVED_METADATA_KEYS.some((k) => Object.hasOwn(m, k)), {
    message: `metadata may not use Easel's own keys (${RESERVED_METADATA_KEYS.join(", ")})`,
  });

/** The caller's part of a job's stored metadata (Easel's own keys left out); null when there is none. */
export function callerMetadata(stored: Record<string, unknown> | null): Record<string, unknown> | null {
  if (!stored) return null;
  const own = Object.entries(stored).filter(([k]) => !RESERVED_METADATA_KEYS.includes(k));
  return own.length > 0 ? Object.fromEntries(own) : null;
}

/** Values for a recipe's `{{variables}}`; each is checked against the recipe's own schema. */
export const RecipeVariables = z.record(z.string().max(64), z.union([z.string().max(1000), z.number()]));
export type RecipeVariables = z.infer<typeof RecipeVariables>;

/** One image request of a batch (`items[]`): its own prompt, optionally its own size, n and seed. */
export const GenerateItem = z.strictObject({
  id: z
    .string()
    .min(1)
    .max(64)
    .regex(
      /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/,
      "item ids use letters, digits, '.', '_' and '-' (not starting with '.')",
    ),
  prompt: Prompt,
  negativePrompt: z.string().max(2000).optional(),
  size: Size.optional(),
  n: z.number().int().min(1).max(4).optional(),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .optional(),
});

/** `POST /api/jobs/generate-image` (JSON). */
export const GenerateBody = z
  .strictObject({
    provider: z.string().min(1).max(64).optional(),
    model: z.string().min(1).max(200).optional(),
    prompt: Prompt.optional(),
    negativePrompt: z.string().max(2000).optional(),
    /** Input image for an edit: a data URL or bare base64 (PNG, JPEG or WebP). */
    image: z.string().min(1).optional(),
    /** Edit mask (same size as the image; transparent = edit). */
    mask: z.string().min(1).optional(),
    /** @defaultValue "1024x1024"; left out, edit models that can (e.g. Kontext, Qwen image edit) follow the input image. */
    size: Size.optional(),
    n: z.number().int().min(1).max(4).default(1),
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 32 - 1)
      .optional(),
    /** Output preset name (`square-1080`, `og-1200x630`, …) or an inline preset. @defaultValue "original" (PNG) */
    output: PresetRefSchema.default("original"),
    /** Provider-specific extras passed through (quality, steps, guidance…). */
    params: z.record(z.string(), z.unknown()).optional(),
    items: z.array(GenerateItem).min(1).max(100).optional(),
    priority: z.number().int().min(-100).max(100).optional(),
    webhookUrl: z.url().max(2000).optional(),
    dedupeKey: z.string().min(1).max(200).optional(),
    /** Apps and admins: the end user this job is for (created on first use). */
    userId: z.string().min(1).max(128).optional(),
    /** The caller's own JSON, handed back on the job, its webhooks and frames (≤ 16 KB serialized). */
    metadata: Metadata.optional(),
    /** Generate from a recipe: its prompt template filled with `variables` (prompt, items, provider, model not allowed). */
    recipeId: z.string().min(1).max(64).optional(),
    variables: RecipeVariables.optional(),
  })
  .refine((b) => b.prompt !== undefined || b.items !== undefined || b.recipeId !== undefined, {
    message: "give a prompt, items[] or a recipeId",
    path: ["prompt"],
  })
  .refine((b) => !b.recipeId || (b.prompt ?? b.items ?? b.provider ?? b.model) === undefined, {
    message: "a recipe sets the prompt, provider and model: leave out prompt, items, provider and model",
    path: ["recipeId"],
  })
  .refine((b) => !b.variables || b.recipeId, { message: "variables need a recipeId", path: ["variables"] })
  .refine((b) => !b.items || new Set(b.items.map((i) => i.id)).size === b.items.length, {
    message: "item ids must be unique",
    path: ["items"],
  })
  .refine((b) => !b.mask || b.image, { message: "a mask needs an image", path: ["mask"] });
export type GenerateBody = z.infer<typeof GenerateBody>;

/** What the `generate` job stores: everything but the prompts, which live on its items. */
export const GenerateJobInput = z.object({
  provider: z.string(),
  model: z.string().optional(),
  size: z.string(),
  n: z.number().int(),
  seed: z.number().int().optional(),
  negativePrompt: z.string().optional(),
  output: PresetRefSchema,
  params: z.record(z.string(), z.unknown()).optional(),
  /** The caller named no size: `size` is the default, and models that can follow the input image do. */
  autoSize: z.boolean().optional(),
  /** Said at submit, e.g. a model outside the provider's capability table that runs unchecked. */
  warnings: z.array(z.string()).optional(),
  /** Storage keys of the validated edit inputs (bytes never sit in the jobs table). */
  imageKey: z.string().optional(),
  maskKey: z.string().optional(),
});
export type GenerateJobInput = z.infer<typeof GenerateJobInput>;

export const GenerateItemInput = GenerateItem.omit({ id: true });
export type GenerateItemInput = z.infer<typeof GenerateItemInput>;

export const GenerateAccepted = z.object({
  jobId: z.string(),
  status: z.string(),
  message: z.string(),
  statusUrl: z.string(),
  websocketSubscription: z.string(),
  totalItems: z.number(),
  /** Present when the request runs with a caveat (a model Easel cannot check). */
  warnings: z.array(z.string()).optional(),
});
