import { Elysia } from "elysia";
import type { Db } from "../../db/client";
import type { User } from "../../db/schema";
import { transaction } from "../../db/tx";
import { authPlugin } from "../auth/plugin";
import type { AuthService } from "../auth/service";
import { idempotencyPlugin } from "../idempotency/plugin";
import type { IdempotencyService } from "../idempotency/service";
import { CreateUserBody } from "./model";
import type { UserService } from "./service";

/** What this file needs from the services, and nothing more. */
type Deps = { auth: AuthService; db: Db; idempotency: IdempotencyService; users: UserService };

export function userView(u: User) {
  return {
    id: u.id,
    name: u.name,
    role: u.role,
    externalId: u.externalId,
    parentId: u.parentId,
    credits: u.credits,
    unlimited: u.unlimited,
    createdAt: u.createdAt,
  };
}

export const usersModule = (ctx: Deps) =>
  new Elysia({ prefix: "/api", name: "users" })
    .use(authPlugin(ctx.auth))
    .use(idempotencyPlugin(ctx.idempotency))
    .get("/profile", ({ principal }) => ({ ...userView(principal.user), via: principal.via }), {
      auth: "token",
      detail: { tags: ["users"], summary: "The calling user" },
    })
    .post(
      "/users",
      ({ body, idem }) =>
        transaction(ctx.db.$client, () => {
          const user = ctx.users.create({
            name: body.name,
            role: body.role,
            externalId: body.externalId,
            unlimited: body.unlimited,
          });
          const key = body.createKey ? ctx.auth.createKey(user.id, "default") : null;
          const view = { user: userView(user), key: key?.key ?? null, keyPrefix: key?.prefix ?? null };
          // The key is shown once: a replay gets the same user without it, so it is never persisted.
          idem.commit(view, { ...view, key: null });
          return view;
        }),
      {
        auth: ["admin"],
        idempotent: 201,
        body: CreateUserBody,
        detail: { tags: ["users"], summary: "Create a user and (by default) an API key, shown once (admin)" },
      },
    );
