import { Elysia } from "elysia";
import type { Logger } from "../../log";
import type { Metrics } from "../metrics/service";

export const REQUEST_ID_HEADER = "x-request-id";

/** A caller's request id is kept when it is a plausible id (it ends up in logs); anything else is replaced. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

/** Probes and scrapes arrive every few seconds: their access lines are debug, not info. */
const QUIET_ROUTES = new Set(["/api/health", "/api/health/ready", "/api/health/live", "/metrics"]);

/** The routed request context, which gains `principal` once auth resolves it. */
type SeenContext = { principal?: { user?: { id?: string } } };
type Seen = { requestId: string; route?: string; context?: SeenContext };

export function requestIdFrom(headers: Headers): string {
  const given = headers.get(REQUEST_ID_HEADER)?.trim();
  return given && SANE_REQUEST_ID.test(given) ? given : Bun.randomUUIDv7();
}

/**
 * Per request: a request id (the caller's `x-request-id`, else a new one) echoed in the response header;
 * one access log line `{method, route, status, ms, requestId, userId}`; the HTTP metrics. The route is the
 * matched pattern (`/api/jobs/:id`), never the raw path: patterns keep metric labels bounded and never carry
 * a `?token=`. Register it first so even requests refused by other onRequest hooks get an id.
 */
export const accessLog = (deps: { log: Logger; metrics: Metrics }) => {
  const seen = new WeakMap<Request, Seen>();
  return (
    new Elysia({ name: "access-log" })
      .onRequest(({ request, set }) => {
        const requestId = requestIdFrom(request.headers);
        set.headers[REQUEST_ID_HEADER] = requestId;
        seen.set(request, { requestId });
      })
      // The routed context is a different object from onRequest's; transform is the first hook that sees it,
      // and runs even when validation fails later. `route` is read here by name: Elysia only fills in the
      // context properties its hooks are seen to use.
      .onTransform({ as: "global" }, (context) => {
        const entry = seen.get(context.request);
        if (!entry) return;
        entry.route = context.route;
        entry.context = context as SeenContext;
      })
      .wrap((handle) => async (request: Request): Promise<Response | undefined> => {
        const t0 = performance.now();
        const response = (await (handle as (r: Request) => unknown)(request)) as Response | undefined;
        const seconds = (performance.now() - t0) / 1000;
        const entry = seen.get(request);
        const route = entry?.route ?? "unmatched";
        // A WebSocket upgrade has no Response: Bun answers 101 itself.
        const status = response?.status ?? 101;
        deps.metrics.httpRequest(request.method, route, status, seconds);
        const line = {
          method: request.method,
          route,
          status,
          ms: Math.round(seconds * 10_000) / 10,
          requestId: entry?.requestId,
          userId: entry?.context?.principal?.user?.id,
        };
        if (QUIET_ROUTES.has(route) && status < 400) deps.log.debug(line, "request");
        else deps.log.info(line, "request");
        return response;
      })
  );
};
