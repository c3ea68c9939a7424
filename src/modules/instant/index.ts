import { Elysia } from "elysia";
import type { AppContext } from "../../context";
import { rateLimited } from "../../errors";
import { TokenBucket } from "../../rate-limit";
import { authPlugin } from "../auth/plugin";
import { idempotencyPlugin } from "../idempotency/plugin";
import { InstantBody } from "./model";

export const instantModule = (ctx: AppContext) => {
  const limiter = new TokenBucket(ctx.config.INSTANT_RATE_PER_MIN);
  return new Elysia({ prefix: "/api", name: "instant" })
    .use(authPlugin(ctx.auth))
    .use(idempotencyPlugin(ctx.idempotency))
    .post(
      "/generate/instant",
      ({ principal, body, idem }) => {
        // After the key's check: a replayed request spends no token and is never refused with 429.
        const user = ctx.auth.actingUser(principal, body.userId);
        const wait = limiter.take(user.id);
        if (wait > 0) throw rateLimited("too many instant claims", wait);
        return ctx.instant.claim(user, body.recipeId, idem);
      },
      {
        auth: ["admin", "app", "user"],
        idempotent: 200,
        body: InstantBody,
        detail: {
          tags: ["instant"],
          summary:
            "Claim a ready backlog generation of a recipe at once, paying its credits (404/409 fallbackToModal when none)",
        },
      },
    );
};
