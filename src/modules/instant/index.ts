import { Elysia } from "elysia";
import type { AppContext } from "../../context";
import { rateLimited } from "../../errors";
import { TokenBucket } from "../../rate-limit";
import { authPlugin } from "../auth/plugin";
import { idempotent } from "../idempotency/service";
import { InstantBody } from "./model";

export const instantModule = (ctx: AppContext) => {
  const limiter = new TokenBucket(ctx.config.INSTANT_RATE_PER_MIN);
  return new Elysia({ prefix: "/api", name: "instant" }).use(authPlugin(ctx.auth)).post(
    "/generate/instant",
    ({ principal, body, headers, set }) =>
      idempotent(
        ctx.idempotency,
        { ownerId: principal.user.id, key: headers["idempotency-key"], request: body, set },
        async () => {
          // Inside the idempotent run: a replayed request spends no token and is never refused with 429.
          const user = ctx.auth.actingUser(principal, body.userId);
          const wait = limiter.take(user.id);
          if (wait > 0) throw rateLimited("too many instant claims", wait);
          return { status: 200, body: await ctx.instant.claim(user, body.recipeId) };
        },
      ),
    {
      auth: ["admin", "app", "user"],
      body: InstantBody,
      detail: {
        tags: ["instant"],
        summary:
          "Claim a ready backlog generation of a recipe at once, paying its credits (404/409 fallbackToModal when none)",
      },
    },
  );
};
