import { dirname, join } from "node:path";
import { SwaggerUIRender } from "@elysiajs/openapi/swagger";
import { Elysia } from "elysia";
import { z } from "zod";
import pkg from "../../../package.json" with { type: "json" };
import type { Config } from "../../config";
import { notFound } from "../../errors";
import { buildOpenApiDocument, globalRoutes, type OpenApiDocument } from "./openapi";

export { buildOpenApiDocument, openApiPath } from "./openapi";

/** Swagger UI's bundle, served from node_modules: the docs work offline, with no CDN. */
const ASSETS: Record<string, string> = {
  "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
  "swagger-ui.css": "text/css; charset=utf-8",
  "favicon-32x32.png": "image/png",
};
const assetDir = dirname(Bun.resolveSync("swagger-ui-dist/package.json", import.meta.dir));

const DESCRIPTION = `Easel is a self-hosted image-generation job server.

Authenticate with \`Authorization: Bearer <key>\`. Errors are \`{ "error": { "code", "message", "details"? } }\`
with a stable \`code\`. POSTs that accept \`Idempotency-Key\` replay the first response for a repeated key.
A typed client for TypeScript: \`treaty<App>(url)\` from \`@elysiajs/eden\` (see the README).`;

const AssetParams = z.object({ file: z.string().max(64) });

/** `GET /docs` (Swagger UI), `GET /docs/json` (the OpenAPI 3.1 document) and the UI's static files. */
export const docsModule = (ctx: { config: Config }) => {
  let cached: { routes: number; doc: OpenApiDocument } | null = null;
  const plugin = new Elysia({ name: "docs" });
  const document = () => {
    const routes = globalRoutes(plugin).length;
    if (cached?.routes !== routes) {
      cached = {
        routes,
        doc: buildOpenApiDocument(plugin, {
          title: "Easel API",
          version: pkg.version,
          description: DESCRIPTION,
          serverUrl: ctx.config.publicUrl,
        }),
      };
    }
    return cached.doc;
  };
  const page = SwaggerUIRender(
    { title: "Easel API reference", description: "Easel API reference", version: pkg.version },
    {
      url: "/docs/json",
      cdn: "/docs/assets/swagger-ui-bundle.js",
      theme: "/docs/assets/swagger-ui.css",
      autoDarkMode: true,
      deepLinking: true,
      persistAuthorization: true,
      displayRequestDuration: true,
    },
  );
  return plugin
    .get("/docs", () => new Response(page, { headers: { "content-type": "text/html; charset=utf-8" } }), {
      detail: { tags: ["docs"], summary: "The API reference (Swagger UI, served locally)" },
    })
    .get("/docs/json", () => Response.json(document()), {
      detail: { tags: ["docs"], summary: "This OpenAPI 3.1 document" },
    })
    .get(
      "/docs/assets/:file",
      ({ params }) => {
        const type = ASSETS[params.file];
        if (!type) throw notFound("file");
        return new Response(Bun.file(join(assetDir, params.file)), {
          headers: { "content-type": type, "cache-control": "public, max-age=86400" },
        });
      },
      {
        params: AssetParams,
        detail: { tags: ["docs"], summary: "Swagger UI's script, stylesheet and icon" },
      },
    );
};
