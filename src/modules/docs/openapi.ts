/**
 * The OpenAPI 3.1 document: @elysiajs/openapi turns every route and its zod schemas into paths; this adds
 * what the schemas cannot carry — auth (bearer keys, client tokens, the dashboard cookie), the error shape
 * and the 4xx each operation can answer, success shapes, examples and tags.
 */
import { toOpenAPISchema } from "@elysiajs/openapi";
import type { AnyElysia, InternalRoute } from "elysia";
import { z } from "zod";
import { OPERATIONS, type OperationDoc } from "./catalog";
import { ErrorBody } from "./schemas";

type Json = Record<string, unknown>;
type Operation = Json & {
  tags?: string[];
  summary?: string;
  description?: string;
  parameters?: Json[];
  requestBody?: { content?: Record<string, Json> } & Json;
  responses?: Record<string, Json>;
  security?: Json[];
};
export type OpenApiDocument = {
  openapi: string;
  info: { title: string; version: string; description?: string };
  servers?: { url: string }[];
  tags: { name: string; description?: string }[];
  paths: Record<string, Record<string, Operation>>;
  components: Json & { schemas: Json; securitySchemes: Json };
};

export type DocumentOptions = { title: string; version: string; description: string; serverUrl: string };

export const OPENAPI_VERSION = "3.1.1";

const HTTP_METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

const TAGS: Record<string, string> = {
  generate: "Queue image generations (prompt, batch, edits) and list providers",
  jobs: "Read and control jobs",
  cards: "Live share cards re-rendered as their data changes",
  realtime: "WebSocket and Server-Sent Events",
  webhooks: "Standard Webhooks endpoints, secrets and deliveries",
  auth: "API keys (list, create, revoke, rotate) and client tokens for browsers",
  users: "Users, keys and credits",
  ops: "Health and the live queue view",
  files: "Stored images (local storage)",
  dashboard: "The web dashboard (HTML, signed-in with a session cookie)",
  docs: "This reference",
};

const ERROR_CODES: Record<number, [code: string, description: string]> = {
  400: [
    "invalid_body",
    "the body is not valid JSON or form data; or `unknown_field`: a field the route does not know, named with the nearest known one",
  ],
  401: ["unauthorized", "missing, invalid, revoked or expired credentials"],
  403: ["forbidden", "the key's role may not do this (or a client token was used where a key is needed)"],
  404: ["not_found", "no such resource, or it belongs to someone else"],
  409: ["conflict", "the resource is not in a state that allows this"],
  413: ["body_too_large", "the body is larger than MAX_BODY_BYTES"],
  415: ["unsupported_media_type", "a body that is not JSON, sent without a Content-Type"],
  422: ["validation_failed", "a field is missing or invalid; `details` lists every issue"],
  429: ["rate_limited", "too many requests; retry later"],
  500: ["internal", "unexpected server error"],
  503: ["unavailable", "not ready"],
};

/** zod → JSON Schema for request (`input`) or response (`output`) shapes; files become binary strings. */
export function zodJsonSchema(schema: z.ZodType, io: "input" | "output" = "input"): Json {
  const json = z.toJSONSchema(schema, {
    io,
    unrepresentable: "any",
    override: (ctx) => {
      const def = (ctx.zodSchema as unknown as { _zod: { def: { type: string } } })._zod.def;
      if (def.type === "custom") Object.assign(ctx.jsonSchema, { type: "string", format: "binary" });
      // `.int()` adds the safe-integer range to every integer: noise in a reference.
      if (ctx.jsonSchema.minimum === Number.MIN_SAFE_INTEGER) delete ctx.jsonSchema.minimum;
      if (ctx.jsonSchema.maximum === Number.MAX_SAFE_INTEGER) delete ctx.jsonSchema.maximum;
    },
  }) as Json;
  delete json.$schema;
  return json;
}

/** Elysia's `/jobs/:id` and `/files/*` as OpenAPI path templates. */
export function openApiPath(path: string): string {
  return path.replace(/:(\w+)\??/g, "{$1}").replace(/\/\*$/, "/{path}");
}

/** Every route the app serves, as the root sees it (a plugin instance only lists its own). */
export function globalRoutes(app: AnyElysia): InternalRoute[] {
  return (app as unknown as { getGlobalRoutes(): InternalRoute[] }).getGlobalRoutes();
}

/** Routes guarded by the `auth` macro carry its resolver; a route without one is public. */
function hasResolver(route: InternalRoute): boolean {
  const before = route.hooks?.beforeHandle as unknown;
  const list = Array.isArray(before) ? before : before ? [before] : [];
  return list.some(
    (h) => typeof h === "object" && h !== null && (h as { subType?: string }).subType === "resolve",
  );
}

function errorResponse(status: number, description?: string): Json {
  const [code, fallback] = ERROR_CODES[status] ?? ["error", "error"];
  return {
    description: description ?? fallback,
    content: {
      "application/json": {
        schema: { $ref: "#/components/schemas/Error" },
        example: { error: { code, message: description ?? fallback } },
      },
    },
  };
}

function successResponse(doc: OperationDoc): [string, Json] {
  const status = String(doc.status ?? 200);
  if (status === "204") return [status, { description: "No content" }];
  if (doc.responseType) {
    const schema = doc.responseType.startsWith("image/")
      ? { type: "string", format: "binary" }
      : { type: "string" };
    return [
      status,
      { description: doc.responseDescription ?? "OK", content: { [doc.responseType]: { schema } } },
    ];
  }
  const media: Json = { schema: doc.response ? zodJsonSchema(doc.response, "output") : {} };
  if (doc.responseExample !== undefined) media.example = doc.responseExample;
  return [status, { description: doc.responseDescription ?? "OK", content: { "application/json": media } }];
}

function security(op: Operation, route: InternalRoute, doc: OperationDoc): Json[] {
  if (op.security) return op.security;
  if (doc.public || !hasResolver(route)) return [];
  return [{ bearerAuth: [] }];
}

/** The errors an operation can answer, from what the route validates and who may call it. */
function errorStatuses(op: Operation, route: InternalRoute, doc: OperationDoc, secured: boolean) {
  const hooks = route.hooks ?? {};
  const statuses: Record<number, string | undefined> = {};
  if (secured) {
    statuses[401] = undefined;
    statuses[403] = undefined;
  }
  if (/[:*]/.test(route.path)) statuses[404] = undefined;
  if (hooks.body) {
    statuses[400] = undefined;
    statuses[413] = undefined;
    statuses[415] = undefined;
  }
  if (hooks.body || hooks.query || hooks.params) statuses[422] = undefined;
  if (op.requestBody && !hooks.body) statuses[400] = undefined;
  Object.assign(statuses, doc.errors);
  statuses[500] = undefined;
  return statuses;
}

function enrich(op: Operation, route: InternalRoute, method: string, path: string): Operation {
  const doc = OPERATIONS[`${route.method} ${route.path}`] ?? {};
  const out: Operation = { ...op };
  out.tags = op.tags?.length
    ? op.tags
    : [path.split("/")[1] === "api" ? "ops" : (path.split("/")[1] ?? "ops")];
  out.summary ??= doc.summary ?? `${method.toUpperCase()} ${path}`;
  out.security = security(op, route, doc);
  const secured = out.security.length > 0;
  if (doc.clientToken) {
    out.description = [op.description, "Also accepts a client token (`POST /api/tokens`) for its user."]
      .filter(Boolean)
      .join("\n\n");
  }
  const parameters = [...(op.parameters ?? [])];
  if (doc.queryToken) {
    parameters.push({
      name: "token",
      in: "query",
      required: false,
      description: "A client token, for browsers that cannot send headers (EventSource). Never an API key.",
      schema: { type: "string" },
    });
  }
  // Set by the idempotency macro (modules/idempotency/plugin.ts) on the routes that take the header.
  const idempotent = (op as Record<string, unknown>)["x-idempotent"] === true;
  delete (out as Record<string, unknown>)["x-idempotent"];
  if (idempotent) {
    parameters.push({
      name: "Idempotency-Key",
      in: "header",
      required: false,
      description:
        "A repeated key replays the first answer (with `Idempotent-Replayed: true`) instead of acting twice; the " +
        "key and the work commit together. A repeat sent while the first request still runs waits for its " +
        "answer (up to IDEMPOTENCY_WAIT_MS), then gets 409 `idempotency_in_progress`; the same key with another " +
        "request gets 422 `idempotency_key_reused`.",
      schema: { type: "string", maxLength: 255 },
    });
  }
  if (parameters.length) out.parameters = parameters;
  if (op.requestBody?.content) {
    const type = doc.bodyType ?? "application/json";
    // The app's global chunked-body parser (src/app.ts) is a function, and @elysiajs/openapi lists no media
    // type for a route with a function parser: the body's schema is rebuilt from the route's zod schema.
    const fallback = route.hooks?.body
      ? { schema: zodJsonSchema(route.hooks.body as z.ZodType, "input") }
      : {};
    const media = op.requestBody.content[type] ?? Object.values(op.requestBody.content)[0] ?? fallback;
    out.requestBody = {
      ...op.requestBody,
      content: {
        [type]: doc.requestExample === undefined ? media : { ...media, example: doc.requestExample },
      },
    };
  }
  const responses: Record<string, Json> = { ...op.responses };
  if (!Object.keys(responses).some((s) => s.startsWith("2") || s.startsWith("3"))) {
    const [status, response] = successResponse(doc);
    responses[status] = response;
  } else if (doc.responseExample !== undefined) {
    for (const [status, r] of Object.entries(responses)) {
      const media = (r.content as Record<string, Json> | undefined)?.["application/json"];
      if (status.startsWith("2") && media) media.example = doc.responseExample;
    }
  }
  for (const [status, description] of Object.entries(errorStatuses(out, route, doc, secured))) {
    responses[status] ??= errorResponse(Number(status), description);
  }
  out.responses = responses;
  return out;
}

/** `WS /ws` is documented as what it is on the wire: a GET upgraded to a WebSocket. */
function websocketOperation(op: Operation): Operation {
  return {
    ...op,
    description:
      "Upgrade to a WebSocket. Authenticate with an Authorization header (API key or client token), or with " +
      "a client token as `?token=` (browsers cannot send headers; an API key is refused in the URL); a " +
      "refused credential closes the socket with code 4401. See the README for the messages.",
    parameters: [
      {
        name: "token",
        in: "query",
        required: false,
        description: "A client token from `POST /api/tokens`; never an API key.",
        schema: { type: "string" },
      },
      ...(op.parameters ?? []),
    ],
    security: [],
    responses: {
      "101": { description: "Switching protocols: the WebSocket is open" },
      "426": { description: "Not a WebSocket upgrade request" },
    },
  };
}

/** Builds the document from the app's routes; deterministic for a given set of routes. */
export function buildOpenApiDocument(app: AnyElysia, o: DocumentOptions): OpenApiDocument {
  const generated = toOpenAPISchema(
    app,
    { methods: ["options"], staticFile: false },
    undefined,
    { zod: (schema: z.ZodType) => zodJsonSchema(schema) },
    OPENAPI_VERSION,
  ) as unknown as { paths: Record<string, Record<string, Operation>> };
  const paths: OpenApiDocument["paths"] = {};
  for (const route of globalRoutes(app)) {
    const raw = route.method.toLowerCase();
    const generatedPath = route.path.replace(/:([^/]+)/g, "{$1}");
    const op = generated.paths[generatedPath]?.[raw];
    if (!op) continue;
    const path = openApiPath(route.path);
    const method = raw === "ws" ? "get" : raw;
    if (!HTTP_METHODS.includes(method)) continue;
    let out = enrich(op, route, method, path);
    // Generators turn operation ids into function names: `postApiJobsGenerate-image` → `…GenerateImage`.
    out.operationId = String(out.operationId ?? "").replace(/[^A-Za-z0-9]+(.)?/g, (_, c?: string) =>
      c ? c.toUpperCase() : "",
    );
    if (raw === "ws") out = websocketOperation(out);
    if (path.endsWith("{path}")) {
      out.parameters = [
        { name: "path", in: "path", required: true, description: "Storage key", schema: { type: "string" } },
        ...(out.parameters ?? []),
      ];
    }
    paths[path] = { ...paths[path], [method]: out };
  }
  const used = new Set(
    Object.values(paths).flatMap((ops) => Object.values(ops).flatMap((op) => op.tags ?? [])),
  );
  return {
    openapi: OPENAPI_VERSION,
    info: { title: o.title, version: o.version, description: o.description },
    servers: [{ url: o.serverUrl }],
    tags: [...used].sort().map((name) => ({ name, description: TAGS[name] })),
    paths,
    components: {
      schemas: { Error: zodJsonSchema(ErrorBody, "output") },
      securitySchemes: {
        bearerAuth: {
          type: "http",
          scheme: "bearer",
          description:
            "An API key (`esk_…`; admin, app or user role). Routes marked so also take a short-lived client " +
            "token (JWT from `POST /api/tokens`), scoped to one user.",
        },
        dashboardSession: {
          type: "apiKey",
          in: "cookie",
          name: "easel_session",
          description: "The dashboard's session cookie, set by `POST /dashboard/login`.",
        },
      },
    },
  };
}
