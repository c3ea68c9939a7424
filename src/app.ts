import { cors } from "@elysiajs/cors";
import { Elysia } from "elysia";
import type { z } from "zod";
import type { AppContext } from "./context";
import { isPgUnavailable } from "./db/pg/sql";
import { isLockedByAnother, isWriteFault, writeHealth } from "./db/write-health";
import { ApiError } from "./errors";
import { parseShallowJson } from "./json-depth";
import { authModule } from "./modules/auth";
import { backlogModule } from "./modules/backlog";
import { cardsModule } from "./modules/cards";
import { creditsModule } from "./modules/credits";
import { dashboardModule } from "./modules/dashboard";
import { docsModule } from "./modules/docs";
import { filesRoutes } from "./modules/files";
import { generateModule } from "./modules/generate";
import { settleFailedRequest } from "./modules/idempotency/plugin";
import { instantModule } from "./modules/instant";
import { jobsModule } from "./modules/jobs";
import { metricsModule } from "./modules/metrics";
import { opsModule } from "./modules/ops";
import { accessLog } from "./modules/ops/access";
import { realtimeModule } from "./modules/realtime";
import { recipesModule } from "./modules/recipes";
import { usersModule } from "./modules/users";
import { webhooksModule } from "./modules/webhooks";
import { LocalStorage, StorageError } from "./storage";
import { describeIssues } from "./validation";

const json = (status: number, body: unknown, headers?: Record<string, string>) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { ...headers, "content-type": "application/json; charset=utf-8" },
  });

const errorBody = (code: string, message: string, details?: unknown) => ({
  error: details === undefined ? { code, message } : { code, message, details },
});

type Validator = { "~standard"?: unknown; schema?: unknown };
type Parser = { safeParse?: (v: unknown) => { success: boolean; error?: { issues: z.core.$ZodIssue[] } } };

/**
 * Elysia's validation error as our shape, from zod's own issues (Elysia's summary drops their codes): 400
 * `unknown_field` when a field is not one the route knows (with the nearest known name), else 422
 * `validation_failed` naming the first bad field; every problem in `details`.
 */
function validationResponse(error: unknown): Response {
  const {
    validator,
    value,
    type = "request",
  } = error as { validator?: Validator; value?: unknown; type?: string };
  const schema = (validator && "~standard" in validator ? validator : validator?.schema) as
    | Parser
    | undefined;
  const issues = schema?.safeParse?.(value).error?.issues ?? [];
  const problems = describeIssues(issues, schema, value);
  const first = problems[0];
  if (!first) return json(422, errorBody("validation_failed", `invalid ${type}`));
  if (first.code === "unknown_field") return json(400, errorBody("unknown_field", first.message, problems));
  const where = first.path ? ` field '${first.path}'` : "";
  return json(422, errorBody("validation_failed", `${type}${where}: ${first.message}`, problems));
}

/** Reads a streamed body, refusing it (413) as soon as it passes `max` bytes. */
async function readCapped(body: ReadableStream<Uint8Array>, max: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > max) throw new ApiError(413, "body_too_large", `request body is larger than ${max} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * Parses a JSON body once its nesting is known to be within `maxDepth`. An empty body is left undefined,
 * as Elysia's own parser leaves it, so routes whose body is optional accept a bare `Content-Type`.
 */
function parseJson(text: string, maxDepth: number): unknown {
  if (text.trim() === "") return undefined;
  return parseShallowJson(text, maxDepth);
}

/** A form as an object: one value per name, or an array of them when the name repeats. */
function formFields(form: {
  keys(): Iterable<string>;
  getAll(name: string): unknown[];
}): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name of new Set(form.keys())) {
    const values = form.getAll(name);
    Object.defineProperty(out, name, {
      value: values.length === 1 ? values[0] : values,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

/**
 * The methods each route path answers, for a 405's `Allow`: a path that exists under another method is not
 * "no route" (a client that sent GET instead of POST is told which to send).
 */
function allowedMethods(routes: readonly { method: string; path: string }[]): (path: string) => string[] {
  const patterns = routes
    .filter((r) => r.method !== "WS")
    .map((r) => ({
      method: r.method,
      re: new RegExp(
        `^${r.path
          .split("/")
          .map((part) =>
            part.startsWith(":")
              ? "[^/]+"
              : part === "*"
                ? ".*"
                : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"),
          )
          .join("/")}/?$`,
      ),
    }));
  return (path) => {
    const methods = new Set(patterns.filter((p) => p.re.test(path)).map((p) => p.method));
    if (methods.has("GET")) methods.add("HEAD");
    return [...methods].sort();
  };
}

/** Content types a client sends JSON under by mistake (curl -d, fetch with a string body, none at all). */
const MISLABELLED_JSON = new Set(["", "text/plain", "application/x-www-form-urlencoded"]);

/**
 * A body under a content type that is not JSON's: JSON if it looks like JSON (what the sender meant), the
 * form fields of a urlencoded form, the text of plain text; anything else unlabelled is a 415.
 */
function decodeMislabelled(text: string, contentType: string, maxDepth: number): unknown {
  const trimmed = text.trimStart();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) return parseShallowJson(text, maxDepth);
  if (contentType === "application/x-www-form-urlencoded")
    return Object.fromEntries(new URLSearchParams(text));
  if (contentType === "text/plain") return text;
  if (trimmed === "") return undefined;
  throw new ApiError(
    415,
    "unsupported_media_type",
    "send the body as JSON with `Content-Type: application/json` (or multipart/form-data where a route takes uploads)",
  );
}

/** Composes the HTTP API from its modules. `App` is exported for typed Eden clients. */
export function createApp(ctx: AppContext) {
  const maxBody = ctx.config.MAX_BODY_BYTES;
  const maxDepth = ctx.config.MAX_JSON_DEPTH;
  let allowed: (path: string) => string[] = () => [];
  // Called on the finished chain, so the 405 answer knows every route.
  const withAllowed = <T extends { routes: readonly { method: string; path: string }[] }>(app: T): T => {
    allowed = allowedMethods(app.routes);
    return app;
  };
  return withAllowed(
    new Elysia({ name: "easel" })
      .use(accessLog(ctx))
      .use(
        ctx.config.CORS_ORIGINS.length
          ? cors({ origin: ctx.config.CORS_ORIGINS })
          : new Elysia({ name: "no-cors" }),
      )
      .onRequest(({ request }) => {
        const length = Number(request.headers.get("content-length") ?? 0);
        if (length > maxBody) {
          return json(413, errorBody("body_too_large", `request body is larger than ${maxBody} bytes`));
        }
      })
      // Bodies are read here, under the size cap even when sent chunked (no Content-Length). JSON is read as
      // text and its depth checked before JSON.parse sees it (see json-depth.ts); so is a body whose content
      // type is missing or not JSON's, which may still be JSON. Form fields stay strings: Elysia's own form
      // parser JSON-parses any field starting with `{` or `[`, with no depth limit.
      .onParse({ as: "global" }, async ({ request, contentType }) => {
        if (!request.body) return;
        const type = contentType ?? "";
        const chunked = !request.headers.has("content-length");
        const mislabelled = MISLABELLED_JSON.has(type);
        const isJson = type.startsWith("application/json");
        const isMultipart = type.startsWith("multipart/form-data");
        if (!chunked && !mislabelled && !isJson && !isMultipart) return;
        // The full header: Elysia's `contentType` has lost its parameters (a multipart boundary).
        const header = request.headers.get("content-type") ?? "";
        const body = chunked
          ? new Response(await readCapped(request.body, maxBody), { headers: { "content-type": header } })
          : request;
        // Invalid JSON or form data throws here; Elysia reports it as PARSE, the 400 below.
        if (mislabelled) return decodeMislabelled(await body.text(), type, maxDepth);
        if (isJson) return parseJson(await body.text(), maxDepth);
        if (isMultipart) return formFields(await body.formData());
        return body.text();
      })
      .onError({ as: "global" }, async ({ code, error, request, set }) => {
        await settleFailedRequest(request, error);
        if (error instanceof ApiError) return json(error.status, error.toBody(), error.headers);
        // The disk or bucket refused a write (read-only, full, unreachable): the request can be retried
        // once the store is back, and the caller learns nothing of its paths.
        if (error instanceof StorageError) {
          ctx.log.error({ err: error, path: new URL(request.url).pathname }, "storage unavailable");
          return json(503, errorBody("storage_unavailable", "file storage is unavailable; try again later"), {
            "retry-after": "30",
          });
        }
        switch (code) {
          case "VALIDATION":
            // An answer that fails its route's own response schema is the server's fault, not the caller's.
            if ((error as { type?: string }).type === "response") {
              ctx.log.error(
                { err: error, path: new URL(request.url).pathname, requestId: set.headers["x-request-id"] },
                "response failed its schema",
              );
              return json(500, errorBody("internal", "internal server error"));
            }
            return validationResponse(error);
          case "NOT_FOUND": {
            const path = new URL(request.url).pathname;
            const methods = allowed(path);
            if (methods.length > 0 && !methods.includes(request.method)) {
              return json(
                405,
                errorBody(
                  "method_not_allowed",
                  `${request.method} is not allowed on ${path}; use ${methods.join(", ")}`,
                ),
                { allow: methods.join(", ") },
              );
            }
            return json(404, errorBody("not_found", `no route for ${request.method} ${path}`));
          }
          case "PARSE":
            // Elysia wraps what a parser throws; our readers throw their own ApiErrors (413, 415, 400 too deep).
            if ((error as Error).cause instanceof ApiError) {
              const cause = (error as Error).cause as ApiError;
              return json(cause.status, cause.toBody(), cause.headers);
            }
            return json(400, errorBody("invalid_body", unparsableBody(request.headers.get("content-type"))));
          case "INVALID_COOKIE_SIGNATURE":
            return json(401, errorBody("unauthorized", "invalid session cookie"));
          default: {
            const refusal = databaseRefusal(ctx, error);
            if (refusal) {
              ctx.log[refusal.level]({ err: error, path: new URL(request.url).pathname }, refusal.log);
              return json(503, errorBody(refusal.code, refusal.message), {
                "retry-after": refusal.retryAfter,
              });
            }
            const status = (error as { status?: number }).status;
            if (typeof status === "number" && status >= 400 && status < 500) {
              return json(status, errorBody("bad_request", (error as Error).message));
            }
            ctx.log.error(
              { err: error, path: new URL(request.url).pathname, requestId: set.headers["x-request-id"] },
              "unhandled error",
            );
            return json(500, errorBody("internal", "internal server error"));
          }
        }
      })
      .use(opsModule(ctx))
      .use(metricsModule(ctx))
      .use(authModule(ctx))
      .use(usersModule(ctx))
      .use(jobsModule(ctx))
      .use(generateModule(ctx))
      .use(cardsModule(ctx))
      .use(realtimeModule(ctx))
      .use(webhooksModule(ctx))
      .use(creditsModule(ctx))
      .use(recipesModule(ctx))
      .use(backlogModule(ctx))
      .use(instantModule(ctx))
      .use(filesRoutes(ctx.storage instanceof LocalStorage ? ctx.storage : null))
      .use(dashboardModule(ctx))
      .use(docsModule(ctx)),
  );
}

/**
 * A database that cannot do the request's work right now, as the 503 that says so (with how long to wait
 * and what to log), or null for any other error. A SQLite write fault is also recorded in the write health,
 * which turns readiness red until a write succeeds.
 */
function databaseRefusal(
  ctx: AppContext,
  error: unknown,
): { code: string; message: string; retryAfter: string; level: "warn" | "error"; log: string } | null {
  if (ctx.sqlite && isWriteFault(error)) {
    writeHealth(ctx.sqlite.$client).failed(error);
    return {
      code: "database_unavailable",
      message: "the database cannot take writes right now; try again later",
      retryAfter: "30",
      level: "error",
      log: "database refused a write",
    };
  }
  if (ctx.sqlite && isLockedByAnother(error)) {
    return {
      code: "database_busy",
      message: "another process holds the database's write lock; try again shortly",
      retryAfter: "1",
      level: "warn",
      log: "database locked by another process",
    };
  }
  // PostgreSQL down, restarting, failing over or out of connections: the pool reconnects by itself, so the
  // client is told to come back shortly rather than that the server broke.
  if (!ctx.sqlite && isPgUnavailable(error)) {
    return {
      code: "database_unavailable",
      message: "the database cannot be reached right now; try again shortly",
      retryAfter: "5",
      level: "error",
      log: "database unavailable",
    };
  }
  return null;
}

/** Why a body could not be read, in terms of what was sent. */
function unparsableBody(contentType: string | null): string {
  if (contentType?.startsWith("multipart/form-data")) {
    return "the multipart/form-data body is malformed (check the boundary and that each part is complete)";
  }
  if (contentType?.startsWith("application/x-www-form-urlencoded")) {
    return "the form body could not be parsed";
  }
  return "the request body is not valid JSON";
}

export type App = ReturnType<typeof createApp>;
