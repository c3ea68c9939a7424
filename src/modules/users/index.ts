import { Elysia } from "elysia";
import type { User } from "../../db/schema";
import type { Sql } from "../../db/sql";
import { authPlugin } from "../auth/plugin";
import type { AuthService } from "../auth/service";
import { routeDoc } from "../docs/model";
import { idempotencyPlugin } from "../idempotency/plugin";
import type { IdempotencyService } from "../idempotency/service";
import { CreatedUserView, CreateUserBody, ProfileView, type UserView } from "./model";
import type { UserService } from "./service";

/** What this file needs from the services, and nothing more. */
type Deps = { auth: AuthService; sql: Sql; idempotency: IdempotencyService; users: UserService };

export function userView(u: User): UserView {
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
      response: { 200: ProfileView },
      detail: { tags: ["users"], summary: "The calling user" },
    })
    .post(
      "/users",
      ({ body, idem }) =>
        ctx.sql.transaction(async () => {
          const user = await ctx.users.create({
            name: body.name,
            role: body.role,
            externalId: body.externalId,
            unlimited: body.unlimited,
          });
          const key = body.createKey ? await ctx.auth.createKey(user.id, "default") : null;
          const view = { user: userView(user), key: key?.key ?? null, keyPrefix: key?.prefix ?? null };
          // The key is shown once: a replay gets the same user without it, so it is never persisted.
          await idem.commit(view, { ...view, key: null });
          return view;
        }),
      {
        auth: ["admin"],
        idempotent: 201,
        body: CreateUserBody,
        response: { 201: CreatedUserView },
        detail: routeDoc({
          tags: ["users"],
          summary: "Create a user and (by default) an API key, shown once (admin)",
          requestExample: { name: "Poll app", role: "app", createKey: true },
          errors: { 409: "a user with this externalId already exists" },
        }),
      },
    );
