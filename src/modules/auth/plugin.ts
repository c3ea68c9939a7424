import { Elysia } from "elysia";
import type { Role } from "../../db/schema";
import { forbidden, unauthorized } from "../../errors";
import type { AuthService, Principal } from "./service";

/** Who may call a route: any authenticated caller, callers with these roles, or also client tokens. */
export type AuthRule = true | "token" | readonly Role[];

/**
 * Reads `Authorization: Bearer …`, or `?token=` on GET requests (WebSocket upgrades, EventSource and <img>
 * can't set headers; a credential in the URL of a state-changing request would end up in logs for nothing).
 */
export function credentialFrom(headers: Record<string, string | undefined>, request: Request): string | null {
  const h = headers.authorization;
  if (h) {
    const m = /^Bearer\s+(.+)$/i.exec(h.trim());
    return m ? m[1]!.trim() : null;
  }
  if (request.method !== "GET") return null;
  const token = new URL(request.url).searchParams.get("token");
  return token || null;
}

/**
 * The request-scoped caller, as a macro: `{ auth: true }` any key; `{ auth: "token" }` keys and client
 * tokens (read-only routes); `{ auth: ["admin"] }` only those roles.
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
        callers.set(request, await authorize(auth, rule, credentialFrom(headers, request)));
      },
      resolve({ request }): { principal: Principal } {
        const principal = callers.get(request);
        if (!principal) throw unauthorized("missing Authorization: Bearer <key>");
        return { principal };
      },
    }),
  });
};

/** The principal behind `credential` if `rule` admits it; throws 401 or 403 otherwise. */
async function authorize(auth: AuthService, rule: AuthRule, credential: string | null): Promise<Principal> {
  if (!credential) throw unauthorized("missing Authorization: Bearer <key>");
  const principal = await auth.authenticate(credential);
  if (!principal) throw unauthorized("invalid, revoked or expired credentials");
  if (rule !== "token" && principal.via === "token") {
    throw forbidden("client tokens may only read their own jobs and events");
  }
  if (Array.isArray(rule) && !rule.includes(principal.user.role)) {
    throw forbidden(`requires role ${rule.join(" or ")}`);
  }
  return principal;
}
