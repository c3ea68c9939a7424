import { createHash, timingSafeEqual } from "node:crypto";
import { Elysia } from "elysia";
import type { Config } from "../../config";
import { unauthorized } from "../../errors";
import type { Metrics } from "./service";

/** What this file needs from the services, and nothing more. */
type Deps = { config: Config; metrics: Metrics };

export { Metrics } from "./service";

const digest = (s: string) => createHash("sha256").update(s).digest();

/** True when `header` is `Bearer <token>`; compares digests in constant time. */
function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header?.trim() ?? "");
  return m !== null && timingSafeEqual(digest(m[1]!.trim()), digest(token));
}

/** `GET /metrics`: Prometheus text format; behind `Authorization: Bearer $METRICS_TOKEN` when that is set. */
export const metricsModule = (ctx: Deps) =>
  new Elysia({ name: "metrics" }).get(
    "/metrics",
    async ({ headers }) => {
      const token = ctx.config.METRICS_TOKEN;
      if (token && !bearerMatches(headers.authorization, token)) {
        throw unauthorized("metrics require Authorization: Bearer <METRICS_TOKEN>");
      }
      return new Response(await ctx.metrics.render(), {
        headers: { "content-type": ctx.metrics.contentType, "cache-control": "no-store" },
      });
    },
    { detail: { tags: ["ops"], summary: "Prometheus metrics (Bearer METRICS_TOKEN when set)" } },
  );
