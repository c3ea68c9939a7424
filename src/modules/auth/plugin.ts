import { Elysia } from "elysia";
import type { Role } from "../../db/schema";
import { forbidden, unauthorized } from "../../errors";
import type { AuthService, Principal } from "./service";

/** Who may call a route: any authenticated caller, callers with these roles, or also client tokens. */
export type AuthRule = true | "token" | readonly Role[];

/** Reads `Authorization: Bearer …` (or `?token=` for WebSocket/SSE clients that can't set headers). */
export function credentialFrom(headers: Record<string, string | undefined>, url: string): string | null {
  const h = headers.authorization;
  if (h) {
    const m = /^Bearer\s+(.+)$/i.exec(h.trim());
    return m ? m[1]!.trim() : null;
  }
  const token = new URL(url).searchParams.get("token");
  return token || null;
}

/**
 * The request-scoped caller, as a macro: `{ auth: true }` any key; `{ auth: "token" }` keys and client
 * tokens (read-only routes); `{ auth: ["admin"] }` only those roles.
 */
export const authPlugin = (auth: AuthService) =>
  new Elysia({ name: "auth" }).macro({
    auth: (rule: AuthRule) => ({
      async resolve({ headers, request }): Promise<{ principal: Principal }> {
        const credential = credentialFrom(headers, request.url);
        if (!credential) throw unauthorized("missing Authorization: Bearer <key>");
        const principal = await auth.authenticate(credential);
        if (!principal) throw unauthorized("invalid, revoked or expired credentials");
        if (rule !== "token" && principal.via === "token") {
          throw forbidden("client tokens may only read their own jobs and events");
        }
        if (Array.isArray(rule) && !rule.includes(principal.user.role)) {
          throw forbidden(`requires role ${rule.join(" or ")}`);
        }
        return { principal };
      },
    }),
  });
