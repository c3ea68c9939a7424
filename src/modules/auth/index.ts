import { Elysia } from "elysia";
import type { AppContext } from "../../context";
import { TokenBody } from "./model";
import { authPlugin } from "./plugin";

export const authModule = (ctx: AppContext) =>
  new Elysia({ prefix: "/api", name: "auth-routes" }).use(authPlugin(ctx.auth)).post(
    "/tokens",
    async ({ principal, body, set }) => {
      const user = ctx.auth.actingUser(principal, body.userId);
      const { token, expiresAt } = await ctx.auth.issueToken(user.id, body.ttlSeconds);
      set.status = 201;
      return {
        token,
        expiresAt,
        userId: user.id,
        websocketUrl: `${ctx.config.publicUrl.replace(/^http/, "ws")}/ws`,
      };
    },
    {
      auth: ["admin", "app", "user"],
      body: TokenBody,
      detail: { tags: ["auth"], summary: "Mint a short-lived client token (JWT) for one user" },
    },
  );
