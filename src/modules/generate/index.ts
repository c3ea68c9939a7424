import { Elysia } from "elysia";
import { z } from "zod";
import type { Config } from "../../config";
import { ApiError, unprocessable } from "../../errors";
import { parseShallowJson } from "../../json-depth";
import type { ProviderRegistry } from "../../providers/registry";
import { describeIssues } from "../../validation";
import { authPlugin } from "../auth/plugin";
import type { AuthService } from "../auth/service";
import { idempotencyPlugin } from "../idempotency/plugin";
import type { IdempotencyService } from "../idempotency/service";
import { GenerateAccepted, GenerateBody } from "./model";
import type { GenerateRequest, GenerateService } from "./service";

/** What this file needs from the services, and nothing more. */
type Deps = {
  auth: AuthService;
  config: Pick<Config, "MAX_JSON_DEPTH">;
  generate: GenerateService;
  idempotency: IdempotencyService;
  providers: ProviderRegistry;
};

/**
 * A JSON field of a multipart form, as text: the app's body parser keeps form fields as strings (app.ts), so
 * the JSON in them is parsed here, under the same depth limit as a JSON body.
 */
const JsonField = z.string().optional();

/** Multipart fields arrive as strings; numbers and JSON fields are parsed, then the JSON schema applies. */
const UploadBody = z.strictObject({
  image: z.instanceof(File).optional(),
  mask: z.instanceof(File).optional(),
  prompt: z.string().optional(),
  provider: z.string().optional(),
  model: z.string().optional(),
  negativePrompt: z.string().optional(),
  size: z.string().optional(),
  n: z.string().optional(),
  seed: z.string().optional(),
  /** A preset name, or an inline preset as JSON text. */
  output: JsonField,
  priority: z.string().optional(),
  webhookUrl: z.string().optional(),
  userId: z.string().optional(),
  items: JsonField,
  params: JsonField,
  recipeId: z.string().optional(),
  variables: JsonField,
  metadata: JsonField,
  dedupeKey: z.string().optional(),
});

function fromMultipart(body: z.infer<typeof UploadBody>, maxDepth: number): unknown {
  const num = (v: string | undefined) => (v === undefined || v === "" ? undefined : Number(v));
  const json = (name: string, v: z.infer<typeof JsonField>) => {
    if (v === undefined || v === "") return undefined;
    try {
      return parseShallowJson(v, maxDepth);
    } catch (err) {
      if (err instanceof ApiError) throw err;
      throw unprocessable("validation_failed", `multipart field '${name}' must be JSON`);
    }
  };
  // A preset name is plain text; only an inline preset is JSON.
  const output = body.output?.startsWith("{") ? json("output", body.output) : body.output;
  const { image: _i, mask: _m, ...fields } = body;
  return {
    ...fields,
    n: num(body.n),
    seed: num(body.seed),
    priority: num(body.priority),
    output,
    items: json("items", body.items),
    params: json("params", body.params),
    variables: json("variables", body.variables),
    metadata: json("metadata", body.metadata),
  };
}

export const generateModule = (ctx: Deps) =>
  new Elysia({ prefix: "/api", name: "generate" })
    .use(authPlugin(ctx.auth))
    .use(idempotencyPlugin(ctx.idempotency))
    .post("/jobs/generate-image", ({ principal, body, idem }) => ctx.generate.submit(principal, body, idem), {
      auth: ["admin", "app", "user"],
      idempotent: 202,
      body: GenerateBody,
      response: { 202: GenerateAccepted },
      detail: {
        tags: ["generate"],
        summary: "Queue an image generation (a prompt, or items[] for a batch; image/mask for edits)",
      },
    })
    .post(
      "/jobs/generate-image/upload",
      async ({ principal, body, idem }) => {
        const fields = fromMultipart(body, ctx.config.MAX_JSON_DEPTH);
        const parsed = GenerateBody.safeParse(fields);
        if (!parsed.success) {
          const problems = describeIssues(parsed.error.issues, GenerateBody, fields);
          const first = problems[0]!;
          throw unprocessable("validation_failed", `body field '${first.path}': ${first.message}`, problems);
        }
        const req: GenerateRequest = {
          ...parsed.data,
          image: body.image ? new Uint8Array(await body.image.arrayBuffer()) : undefined,
          mask: body.mask ? new Uint8Array(await body.mask.arrayBuffer()) : undefined,
        };
        return ctx.generate.submit(principal, req, idem);
      },
      {
        auth: ["admin", "app", "user"],
        idempotent: 202,
        body: UploadBody,
        detail: {
          tags: ["generate"],
          summary: "Queue a generation with the input image uploaded as multipart/form-data",
        },
      },
    )
    .get("/providers", () => ({ providers: ctx.providers.list(), default: ctx.providers.defaultName }), {
      auth: "token",
      detail: { tags: ["generate"], summary: "Enabled image providers with their models and limits" },
    });
