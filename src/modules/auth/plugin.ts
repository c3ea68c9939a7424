import { Elysia } from "elysia";
import type { Role } from "../../db/schema";
import { forbidden, unauthorized } from "../../errors";
import type { AuthService, Principal } from "./service";

/**
 * Who may call a route: any authenticated caller, callers with these roles, also client tokens (`"token"`),
 * or also a client token in `?token=` (`"stream"`: routes a browser opens without headers).
 */
export type AuthRule = true | "token" | "stream" | readonly Role[];

const KEY_IN_URL =
  "API keys are not accepted in the URL (they end up in logs): send Authorization: Bearer <key>, " +
  "or use a client token from POST /api/tokens";

/**
 * The caller of a request: `Authorization: Bearer <key or client token>`, or, where `query` allows it, a
 * client token in `?token=`. Only the WebSocket and the SSE stream allow it (a browser's WebSocket and
 * EventSource cannot send headers), and never for an API key: a URL ends up in access logs, proxies and
 * browser history, where a short-lived client token does little harm and a key would be a standing leak.
 * Null when no credential was sent; throws 401 when one was refused.
 */
export async function principalFrom(
  auth: AuthService,
  headers: Record<string, string | undefined>,
  request: Request,
  opts: { query: boolean },
): Promise<Principal | null> {
  const h = headers.authorization;
  if (h) {
    const m = /^Bearer\s+(.+)$/i.exec(h.trim());
    if (!m) throw unauthorized("send Authorization: Bearer <key>");
    return (await auth.authenticate(m[1]!.trim())) ?? refused();
  }
  if (!opts.query || request.method !== "GET") return null;
  const token = new URL(request.url).searchParams.get("token");
  if (!token) return null;
  if (auth.isKeyShaped(token)) throw unauthorized(KEY_IN_URL);
  return (await auth.authenticateToken(token)) ?? refused();
}

function refused(): never {
  throw unauthorized("invalid, revoked or expired credentials");
}

/**
 * The request-scoped caller, as a macro: `{ auth: true }` any key; `{ auth: "token" }` keys and client
 * tokens (read-only routes); `{ auth: "stream" }` those, and a client token as `?token=`; `{ auth: ["admin"] }`
 * only those roles.
 *
 * The caller is checked in `transform`, which Elysia runs before validating the body, query and params: an
 * anonymous or unauthorised caller gets its 401/403 without any schema work and without a 422 that would
 * describe the schema. `resolve` (after validation) hands the principal found there to the handler.
 */
export const authPlugin = (auth: AuthService) => {
  const callers = new WeakMap<Request, Principal>();
  return new Elysia({ name: "auth" }).macro({
    auth: (rule: AuthRule) => ({
      async transform({ headers, request }) {
        callers.set(request, await authorize(auth, rule, headers, request));
      },
      resolve({ request }): { principal: Principal } {
        const principal = callers.get(request);
        if (!principal) throw unauthorized("missing Authorization: Bearer <key>");
        return { principal };
      },
    }),
  });
};

/** The caller of `request` if `rule` admits it; throws 401 or 403 otherwise. */
async function authorize(
  auth: AuthService,
  rule: AuthRule,
  headers: Record<string, string | undefined>,
  request: Request,
): Promise<Principal> {
  const principal = await principalFrom(auth, headers, request, { query: rule === "stream" });
  if (!principal) throw unauthorized("missing Authorization: Bearer <key>");
  if (rule !== "token" && rule !== "stream" && principal.via === "token") {
    throw forbidden("client tokens may only read their own jobs and events");
  }
  if (Array.isArray(rule) && !rule.includes(principal.user.role)) {
    throw forbidden(`requires role ${rule.join(" or ")}`);
  }
  return principal;
}
