import { cors } from "@elysiajs/cors";
import { Elysia } from "elysia";
import type { AppContext } from "./context";
import { isWriteFault, writeHealth } from "./db/write-health";
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

const json = (status: number, body: unknown, headers?: Record<string, string>) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { ...headers, "content-type": "application/json; charset=utf-8" },
  });

const errorBody = (code: string, message: string, details?: unknown) => ({
  error: details === undefined ? { code, message } : { code, message, details },
});

type Issue = { path?: unknown; message?: string; summary?: string };

/** Elysia's validation error as our shape: 422 naming the first bad field, all issues in `details`. */
function validationResponse(error: unknown): Response {
  const all = ((error as { all?: Issue[] }).all ?? []).map((i) => ({
    path: typeof i.path === "string" ? i.path.replace(/^\//, "").replaceAll("/", ".") : String(i.path ?? ""),
    message: i.message ?? i.summary ?? "invalid",
  }));
  const first = all[0];
  const type = (error as { type?: string }).type ?? "request";
  const message = first
    ? `${type} ${first.path ? `field '${first.path}'` : ""}: ${first.message}`.replace("  ", " ")
    : "invalid request";
  return json(422, errorBody("validation_failed", message, all));
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

/** Composes the HTTP API from its modules. `App` is exported for typed Eden clients. */
export function createApp(ctx: AppContext) {
  const maxBody = ctx.config.MAX_BODY_BYTES;
  const maxDepth = ctx.config.MAX_JSON_DEPTH;
  return (
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
      // text and its depth checked before JSON.parse sees it (see json-depth.ts). Form fields stay strings:
      // Elysia's own form parser JSON-parses any field starting with `{` or `[`, with no depth limit.
      .onParse({ as: "global" }, async ({ request, contentType }) => {
        if (!request.body) return;
        const chunked = !request.headers.has("content-length");
        const isJson = contentType?.startsWith("application/json") ?? false;
        const isForm =
          (contentType?.startsWith("multipart/form-data") ||
            contentType?.startsWith("application/x-www-form")) ??
          false;
        if (!chunked && !isJson && !isForm) return;
        // The full header: Elysia's `contentType` has lost its parameters (a multipart boundary).
        const type = request.headers.get("content-type") ?? "";
        const body = chunked
          ? new Response(await readCapped(request.body, maxBody), { headers: { "content-type": type } })
          : request;
        // Invalid JSON or form data throws here; Elysia reports it as PARSE, the 400 below.
        if (isJson) return parseJson(await body.text(), maxDepth);
        if (isForm) return formFields(await body.formData());
        return body.text();
      })
      .onError({ as: "global" }, ({ code, error, request, set }) => {
        settleFailedRequest(request, error);
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
            return validationResponse(error);
          case "NOT_FOUND":
            return json(
              404,
              errorBody("not_found", `no route for ${request.method} ${new URL(request.url).pathname}`),
            );
          case "PARSE":
            // Elysia wraps what a parser throws; the capped reader (413) and the depth check (400) throw their own.
            if ((error as Error).cause instanceof ApiError) {
              const cause = (error as Error).cause as ApiError;
              return json(cause.status, cause.toBody());
            }
            return json(
              400,
              errorBody("invalid_body", "the request body could not be parsed (send valid JSON)"),
            );
          case "INVALID_COOKIE_SIGNATURE":
            return json(401, errorBody("unauthorized", "invalid session cookie"));
          default: {
            if (isWriteFault(error)) {
              writeHealth(ctx.db.$client).failed(error);
              ctx.log.error({ err: error, path: new URL(request.url).pathname }, "database refused a write");
              return json(
                503,
                errorBody(
                  "database_unavailable",
                  "the database cannot take writes right now; try again later",
                ),
                { "retry-after": "30" },
              );
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
      .use(docsModule(ctx))
  );
}

export type App = ReturnType<typeof createApp>;
