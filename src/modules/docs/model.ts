import type { DocumentDecoration } from "elysia";
import { z } from "zod";

export const ErrorBody = z
  .object({
    error: z.object({
      code: z.string().meta({ description: "Stable, machine-readable code, e.g. `not_found`" }),
      message: z.string(),
      details: z.unknown().optional(),
    }),
  })
  .meta({ title: "Error", description: "Every 4xx/5xx answer has this shape." });

/**
 * What a route's `detail` says for the API reference beyond what its schemas, `auth` and `idempotent` already
 * tell (modules/docs/openapi.ts reads it). A JSON answer's shape is the route's `response:`, never this.
 */
export type RouteDoc = {
  tags: string[];
  summary: string;
  /** Errors particular to this operation, by status (the common ones are added for every route). */
  errors?: Record<number, string>;
  requestExample?: unknown;
  /** An example of the success answer, next to the shape the route's `response:` declares. */
  responseExample?: unknown;
  /** The success answer, for a route without a JSON `response:` schema. @defaultValue 200 */
  status?: number;
  /** A success answer that is not JSON, e.g. `image/png`. */
  responseType?: string;
  responseDescription?: string;
  /** The body's media type. @defaultValue application/json */
  bodyType?: "application/json" | "multipart/form-data" | "application/x-www-form-urlencoded";
  /** Who may call it, for routes whose credentials no macro states (the dashboard's session cookie). */
  security?: Record<string, string[]>[];
};

/** The extension key under which a route's `RouteDoc` extras travel in its `detail`. */
export const ROUTE_DOC = "x-easel";

/** A route's `detail`: tags and summary as OpenAPI has them, the rest under `x-easel` for the reference. */
export function routeDoc({ tags, summary, security, ...extra }: RouteDoc): DocumentDecoration {
  const detail: DocumentDecoration = { tags, summary };
  if (security) detail.security = security;
  if (Object.keys(extra).length) Object.assign(detail, { [ROUTE_DOC]: extra });
  return detail;
}

/** Read back by the reference: the extras of a route's `detail`. */
export function routeDocOf(detail: unknown): Omit<RouteDoc, "tags" | "summary" | "security"> {
  const extra = (detail as Record<string, unknown> | undefined)?.[ROUTE_DOC];
  return (extra ?? {}) as Omit<RouteDoc, "tags" | "summary" | "security">;
}
