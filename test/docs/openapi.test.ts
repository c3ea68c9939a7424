import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { z } from "zod";
import { openApiPath } from "../../src/modules/docs";
import { startTestServer, type TestServer } from "../helpers";

type Operation = {
  tags?: string[];
  summary?: string;
  operationId?: string;
  security?: Record<string, string[]>[];
  parameters?: { name: string; in: string; schema?: { enum?: string[] } }[];
  requestBody?: {
    content: Record<string, { schema?: { properties?: Record<string, unknown> }; example?: unknown }>;
  };
  responses: Record<
    string,
    { description: string; content?: Record<string, { schema?: { $ref?: string } }> }
  >;
};
type Doc = {
  openapi: string;
  info: { title: string; version: string };
  tags: { name: string }[];
  paths: Record<string, Record<string, Operation>>;
  components: {
    schemas: Record<string, unknown>;
    securitySchemes: Record<string, { type: string; scheme?: string }>;
  };
};

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

let server: TestServer;
let doc: Doc;

beforeAll(async () => {
  server = await startTestServer({ env: { RENDER_WORKERS: "1" } });
  const res = await server.api("/docs/json", { key: null });
  expect(res.status).toBe(200);
  doc = (await res.json()) as Doc;
});
afterAll(() => server.close());

const op = (path: string, method: string): Operation => {
  const found = doc.paths[path]?.[method];
  if (!found) throw new Error(`${method.toUpperCase()} ${path} is not documented`);
  return found;
};

/** Every `$ref` in the document, for checking they resolve. */
function refs(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) refs(v, out);
  else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      if (k === "$ref" && typeof v === "string") out.push(v);
      else refs(v, out);
    }
  }
  return out;
}

describe("GET /docs/json", () => {
  test("is a valid OpenAPI 3 document: version, info, paths whose operations all have responses", () => {
    expect(doc.openapi).toMatch(/^3\.\d+\.\d+$/);
    expect(doc.info.title).toBe("Easel API");
    expect(doc.info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(Object.keys(doc.paths).length).toBeGreaterThan(30);
    const ids = new Set<string>();
    for (const [path, item] of Object.entries(doc.paths)) {
      expect(path.startsWith("/")).toBe(true);
      for (const [method, operation] of Object.entries(item)) {
        expect(METHODS).toContain(method);
        expect(Object.keys(operation.responses).length).toBeGreaterThan(0);
        for (const r of Object.values(operation.responses)) expect(typeof r.description).toBe("string");
        expect(operation.tags?.length).toBeGreaterThan(0);
        expect(operation.operationId).toMatch(/^[A-Za-z0-9_]+$/);
        expect(ids.has(operation.operationId!)).toBe(false);
        ids.add(operation.operationId!);
        // Every {param} in the path is declared as a path parameter.
        for (const [, name] of path.matchAll(/\{(\w+)\}/g)) {
          expect(operation.parameters?.some((p) => p.in === "path" && p.name === name)).toBe(true);
        }
      }
    }
    for (const ref of refs(doc)) {
      const name = ref.replace("#/components/schemas/", "");
      expect(doc.components.schemas[name]).toBeDefined();
    }
  });

  test("lists every registered route", () => {
    const routes = server.app.routes.filter((r) => r.method !== "OPTIONS");
    expect(routes.length).toBeGreaterThan(30);
    const missing = routes.filter((r) => {
      const method = r.method === "WS" ? "get" : r.method.toLowerCase();
      return !doc.paths[openApiPath(r.path)]?.[method];
    });
    expect(missing.map((r) => `${r.method} ${r.path}`)).toEqual([]);
  });

  test("documents request bodies, query and path parameters from the zod schemas", () => {
    const generate = op("/api/jobs/generate-image", "post");
    const body = generate.requestBody?.content["application/json"];
    expect(Object.keys(body?.schema?.properties ?? {})).toEqual(
      expect.arrayContaining(["prompt", "size", "items"]),
    );
    expect(body?.example).toMatchObject({ prompt: expect.any(String) });
    const status = op("/api/jobs", "get").parameters?.find((p) => p.name === "status");
    expect(status?.schema?.enum).toEqual(expect.arrayContaining(["queued", "failed", "delayed"]));
    expect(op("/api/jobs/{id}/status", "get").parameters).toContainEqual(
      expect.objectContaining({ name: "id", in: "path" }),
    );
    const upload = op("/api/jobs/generate-image/upload", "post").requestBody?.content["multipart/form-data"];
    expect(upload?.schema?.properties?.image).toEqual({ type: "string", format: "binary" });
  });

  test("every API request body has an example, and each JSON example passes the route's own validation", async () => {
    // A fresh copy: bun's toMatchObject with asymmetric matchers (above) can write the matcher into `doc`.
    const fresh = (await (await server.api("/docs/json", { key: null })).json()) as Doc;
    const op = (path: string, method: string) => fresh.paths[path]![method]!;
    const missing: string[] = [];
    let checked = 0;
    for (const route of server.app.routes) {
      if (!route.path.startsWith("/api/") || !route.hooks?.body) continue;
      const path = route.path.replace(/:(\w+)/g, "{$1}");
      const content = op(path, route.method.toLowerCase()).requestBody?.content ?? {};
      const [type, media] = Object.entries(content)[0] ?? [];
      if (media?.example === undefined) {
        missing.push(`${route.method} ${route.path}`);
        continue;
      }
      if (type !== "application/json") continue;
      const parsed = (route.hooks.body as z.ZodType).safeParse(media.example);
      expect(`${route.method} ${route.path}: ${parsed.error?.message ?? "ok"}`).toEndWith(": ok");
      checked++;
    }
    expect(missing).toEqual([]);
    expect(checked).toBeGreaterThan(10);
  });

  test("declares bearer auth, and which routes are public", () => {
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: "http", scheme: "bearer" });
    expect(op("/api/jobs/{id}/status", "get").security).toEqual([{ bearerAuth: [] }]);
    expect(op("/api/cards", "post").security).toEqual([{ bearerAuth: [] }]);
    expect(op("/api/health", "get").security).toEqual([]);
    expect(op("/api/cards/{id}/image", "get").security).toEqual([]);
    expect(op("/dashboard/jobs", "get").security).toEqual([{ dashboardSession: [] }]);
  });

  test("documents the error shape and each operation's 4xx", () => {
    const isError = (r: Operation["responses"][string] | undefined) =>
      r?.content?.["application/json"]?.schema?.$ref === "#/components/schemas/Error";
    expect(doc.components.schemas.Error).toMatchObject({ type: "object", required: ["error"] });
    const generate = op("/api/jobs/generate-image", "post").responses;
    for (const s of ["400", "401", "403", "413", "422"]) expect(isError(generate[s])).toBe(true);
    expect(generate["202"]).toBeDefined();
    const cancel = op("/api/jobs/{id}/cancel", "post").responses;
    for (const s of ["401", "404", "409"]) expect(isError(cancel[s])).toBe(true);
    expect(op("/api/cards/preview", "post").responses["429"]).toBeDefined();
    // A public route without input has no 401/422.
    expect(Object.keys(op("/api/health/live", "get").responses)).not.toContain("401");
  });

  test("tags every operation by module and lists the tags", () => {
    const names = doc.tags.map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(["jobs", "generate", "cards", "dashboard", "realtime"]));
    expect(op("/api/jobs/{id}", "get").tags).toEqual(["jobs"]);
  });

  test("documents the WebSocket as an upgrade", () => {
    expect(op("/ws", "get").responses["101"]).toBeDefined();
  });
});

describe("GET /docs", () => {
  test("serves Swagger UI from this server, with no external script or stylesheet", async () => {
    const res = await server.api("/docs", { key: null });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    const page = await res.text();
    const sources = [...page.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(sources).toEqual(["/docs/assets/swagger-ui.css", "/docs/assets/swagger-ui-bundle.js"]);
    expect(page).toContain('"url":"/docs/json"');
    for (const source of sources) {
      const asset = await server.api(source, { key: null });
      expect(asset.status).toBe(200);
      expect((await asset.arrayBuffer()).byteLength).toBeGreaterThan(10_000);
    }
    expect((await server.api("/docs/assets/..%2Fpackage.json", { key: null })).status).toBe(404);
  });
});
