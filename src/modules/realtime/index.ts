import { Elysia } from "elysia";
import { ApiError } from "../../errors";
import { authPlugin, principalFrom } from "../auth/plugin";
import type { AuthService, Principal } from "../auth/service";
import { routeDoc } from "../docs/model";
import type { JobService } from "../jobs/service";
import { JobEventsParams } from "./model";
import type { RealtimeService } from "./service";
import type { Socket } from "./sessions";

export { RealtimeService, realtimeOptions, socketServerOptions } from "./service";

/**
 * The caller of an upgrade request (a header, or a client token as `?token=`), or null: a refused WebSocket
 * is closed with 4401, not answered with 401.
 */
async function principalOf(
  auth: AuthService,
  headers: Record<string, string | undefined>,
  request: Request,
): Promise<Principal | null> {
  try {
    return await principalFrom(auth, headers, request, { query: true });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return null;
    throw err;
  }
}

/** Elysia hands `ping`/`pong` the raw socket and the other callbacks a wrapper with `.raw`. */
/** What this file needs from the services, and nothing more. */
type Deps = {
  auth: AuthService;
  jobs: Pick<JobService, "visible">;
  realtime: RealtimeService;
};

const rawSocket = (ws: object): Socket => ("raw" in ws ? ws.raw : ws) as Socket;

/**
 * The `/ws` protocol's callbacks for an Elysia `.ws()` route; `principalOf` reads who opened the socket from
 * the route's resolved data (`/ws`: a key or token; `/dashboard/ws`: the session cookie).
 */
export function socketHandlers<D>(ctx: Pick<Deps, "realtime">, principalOf: (data: D) => Principal | null) {
  const sessions = ctx.realtime.sessions;
  return {
    open: (ws: { data: D }) => sessions.open(rawSocket(ws), principalOf(ws.data)),
    message: (ws: object, message: unknown) => sessions.message(rawSocket(ws), message),
    close: (ws: object) => sessions.close(rawSocket(ws)),
    pong: (ws: object) => sessions.pong(rawSocket(ws)),
  };
}

const socketRoutes = (ctx: Pick<Deps, "auth" | "realtime">) =>
  new Elysia({ name: "realtime-ws" })
    .resolve(async ({ headers, request }) => ({
      wsPrincipal: await principalOf(ctx.auth, headers, request),
    }))
    .ws("/ws", {
      ...socketHandlers(ctx, (data: { wsPrincipal: Principal | null }) => data.wsPrincipal),
      detail: {
        tags: ["realtime"],
        summary:
          "Job progress and card events over WebSocket (client token as `?token=`, or Authorization header)",
      },
    });

const streamRoutes = (ctx: Deps) =>
  new Elysia({ prefix: "/api", name: "realtime-sse" })
    .use(authPlugin(ctx.auth))
    .get(
      "/jobs/:id/events",
      async ({ principal, params, headers }) =>
        ctx.realtime.streams.response(
          await ctx.jobs.visible(principal, params.id),
          headers["last-event-id"] ?? null,
        ),
      {
        auth: "stream",
        params: JobEventsParams,
        detail: routeDoc({
          tags: ["realtime"],
          summary: "A job's progress and outcome as Server-Sent Events (ends after the terminal event)",
          responseType: "text/event-stream",
          responseDescription:
            "Server-Sent Events: job_progress, then one terminal event, then the stream ends",
        }),
      },
    );

/** `WS /ws` and `GET /api/jobs/:id/events`. */
export const realtimeModule = (ctx: Deps) =>
  new Elysia({ name: "realtime" }).use(socketRoutes(ctx)).use(streamRoutes(ctx));
