import { Elysia } from "elysia";
import type { Config } from "../../config";
import { routeDoc } from "../docs/model";
import {
  CreateKeyBody,
  KeyIdParams,
  KeyList,
  KeyView,
  ListKeysQuery,
  NewKeyView,
  RotateKeyBody,
  TokenBody,
  TokenView,
} from "./model";
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
        const user = await ctx.auth.actingUser(principal, body.userId);
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
        response: { 201: TokenView },
        detail: routeDoc({
          tags: ["auth"],
          summary: "Mint a short-lived client token (JWT) for one user",
          requestExample: { userId: "user-42", ttlSeconds: 900 },
        }),
      },
    )
    .get(
      "/keys",
      async ({ principal, query }) => {
        const owner = await ctx.auth.keyOwner(principal, query.userId, { create: false });
        return { keys: (await ctx.auth.keys.listOf(owner.id)).map((k) => ctx.auth.keys.view(k)) };
      },
      {
        auth: ["admin", "app", "user"],
        query: ListKeysQuery,
        response: { 200: KeyList },
        detail: routeDoc({
          tags: ["auth"],
          summary: "List a user's API keys (prefix, created, last used, expiry)",
          errors: { 404: "no such user, or not one the caller may name" },
        }),
      },
    )
    .post(
      "/keys",
      async ({ principal, body, set }) => {
        const owner = await ctx.auth.keyOwner(principal, body.userId, { create: true });
        const { key, row } = await ctx.auth.keys.create(owner.id, body.name, {
          expiresInSeconds: body.expiresInSeconds,
        });
        set.status = 201;
        return { ...ctx.auth.keys.view(row), key, rotatedFrom: null };
      },
      {
        auth: ["admin", "app", "user"],
        body: CreateKeyBody,
        response: { 201: NewKeyView },
        detail: routeDoc({
          tags: ["auth"],
          summary: "Create an API key; the full key is in this answer only",
          requestExample: { name: "production", expiresInSeconds: 90 * 86_400 },
          errors: {
            404: "no such user",
            422: "invalid fields, or the reserved name `ADMIN_KEY` (`reserved_name`)",
          },
        }),
      },
    )
    .delete(
      "/keys/:id",
      async ({ principal, params }) => {
        const key = await ctx.auth.manageableKey(principal, params.id);
        return ctx.auth.keys.view((await ctx.auth.keys.revoke(key.id))!);
      },
      {
        auth: ["admin", "app", "user"],
        params: KeyIdParams,
        response: { 200: KeyView },
        detail: { tags: ["auth"], summary: "Revoke an API key: its next request gets 401" },
      },
    )
    .post(
      "/keys/:id/rotate",
      async ({ principal, params, body, set }) => {
        const old = await ctx.auth.manageableKey(principal, params.id);
        const { key, row, replaced } = await ctx.auth.keys.rotate(old.id, {
          expiresInSeconds: body?.expiresInSeconds,
        });
        set.status = 201;
        return { ...ctx.auth.keys.view(row), key, rotatedFrom: replaced.id };
      },
      {
        auth: ["admin", "app", "user"],
        params: KeyIdParams,
        body: RotateKeyBody,
        response: { 201: NewKeyView },
        detail: routeDoc({
          tags: ["auth"],
          summary: "Rotate an API key: a new secret, the old key revoked in the same transaction",
          requestExample: { expiresInSeconds: 90 * 86_400 },
          errors: {
            409: "the key is revoked (`key_revoked`), or it is the ADMIN_KEY variable's (`managed_key`)",
          },
        }),
      },
    );
