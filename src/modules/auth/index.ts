import { Elysia } from "elysia";
import type { Config } from "../../config";
import { CreateKeyBody, KeyIdParams, ListKeysQuery, RotateKeyBody, TokenBody } from "./model";
import { authPlugin } from "./plugin";
import type { AuthService } from "./service";

/** What this file needs from the services, and nothing more. */
type Deps = { auth: AuthService; config: Config };

/** `POST /api/tokens` and key management: `/api/keys` (list, create, revoke, rotate). */
export const authModule = (ctx: Deps) =>
  new Elysia({ prefix: "/api", name: "auth-routes" })
    .use(authPlugin(ctx.auth))
    .post(
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
    )
    .get(
      "/keys",
      ({ principal, query }) => {
        const owner = ctx.auth.keyOwner(principal, query.userId, { create: false });
        return { keys: ctx.auth.keys.listOf(owner.id).map((k) => ctx.auth.keys.view(k)) };
      },
      {
        auth: ["admin", "app", "user"],
        query: ListKeysQuery,
        detail: { tags: ["auth"], summary: "List a user's API keys (prefix, created, last used, expiry)" },
      },
    )
    .post(
      "/keys",
      ({ principal, body, set }) => {
        const owner = ctx.auth.keyOwner(principal, body.userId, { create: true });
        const { key, row } = ctx.auth.keys.create(owner.id, body.name, {
          expiresInSeconds: body.expiresInSeconds,
        });
        set.status = 201;
        return { ...ctx.auth.keys.view(row), key, rotatedFrom: null };
      },
      {
        auth: ["admin", "app", "user"],
        body: CreateKeyBody,
        detail: { tags: ["auth"], summary: "Create an API key; the full key is in this answer only" },
      },
    )
    .delete(
      "/keys/:id",
      ({ principal, params }) => {
        const key = ctx.auth.manageableKey(principal, params.id);
        return ctx.auth.keys.view(ctx.auth.keys.revoke(key.id)!);
      },
      {
        auth: ["admin", "app", "user"],
        params: KeyIdParams,
        detail: { tags: ["auth"], summary: "Revoke an API key: its next request gets 401" },
      },
    )
    .post(
      "/keys/:id/rotate",
      ({ principal, params, body, set }) => {
        const old = ctx.auth.manageableKey(principal, params.id);
        const { key, row, replaced } = ctx.auth.keys.rotate(old.id, {
          expiresInSeconds: body?.expiresInSeconds,
        });
        set.status = 201;
        return { ...ctx.auth.keys.view(row), key, rotatedFrom: replaced.id };
      },
      {
        auth: ["admin", "app", "user"],
        params: KeyIdParams,
        body: RotateKeyBody,
        detail: {
          tags: ["auth"],
          summary: "Rotate an API key: a new secret, the old key revoked in the same transaction",
        },
      },
    );
