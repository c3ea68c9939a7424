import { Elysia } from "elysia";
import { z } from "zod";
import type { AppContext } from "../../context";
import { ApiError, unprocessable } from "../../errors";
import { parseShallowJson } from "../../json-depth";
import { authPlugin } from "../auth/plugin";
import { idempotencyPlugin } from "../idempotency/plugin";
import { GenerateAccepted, GenerateBody } from "./model";
import type { GenerateRequest } from "./service";

/** Multipart fields arrive as strings; numbers and JSON fields are parsed, then the JSON schema applies. */
const UploadBody = z.object({
  image: z.instanceof(File).optional(),
  mask: z.instanceof(File).optional(),
  prompt: z.string().optional(),
  provider: z.string().optional(),
  model: z.string().optional(),
  negativePrompt: z.string().optional(),
  size: z.string().optional(),
  n: z.string().optional(),
  seed: z.string().optional(),
  output: z.string().optional(),
  priority: z.string().optional(),
  webhookUrl: z.string().optional(),
  userId: z.string().optional(),
  /** JSON text. */
  items: z.string().optional(),
  /** JSON text. */
  params: z.string().optional(),
  recipeId: z.string().optional(),
  /** JSON text. */
  variables: z.string().optional(),
});

function fromMultipart(body: z.infer<typeof UploadBody>, maxDepth: number): unknown {
  const num = (v: string | undefined) => (v === undefined || v === "" ? undefined : Number(v));
  const json = (name: string, v: string | undefined) => {
    if (v === undefined || v === "") return undefined;
    try {
      // The JSON body's depth limit holds for JSON carried in form fields too.
      return parseShallowJson(v, maxDepth);
    } catch (err) {
      if (err instanceof ApiError) throw err;
      throw unprocessable("validation_failed", `multipart field '${name}' must be JSON`);
    }
  };
  const output = json("output", body.output?.startsWith("{") ? body.output : undefined) ?? body.output;
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
  };
}

export const generateModule = (ctx: AppContext) =>
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
        const parsed = GenerateBody.safeParse(fromMultipart(body, ctx.config.MAX_JSON_DEPTH));
        if (!parsed.success) {
          const first = parsed.error.issues[0];
          throw unprocessable(
            "validation_failed",
            `body field '${first?.path.join(".") ?? ""}': ${first?.message ?? "invalid"}`,
            parsed.error.issues.map((i) => ({ path: i.path.join("."), message: i.message })),
          );
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
