import { Elysia } from "elysia";
import type { Config } from "../../config";
import { rateLimited } from "../../errors";
import { TokenBucket } from "../../rate-limit";
import { authPlugin } from "../auth/plugin";
import type { AuthService } from "../auth/service";
import { idempotencyPlugin } from "../idempotency/plugin";
import type { IdempotencyService } from "../idempotency/service";
import { InstantBody } from "./model";
import type { InstantService } from "./service";

/** What this file needs from the services, and nothing more. */
type Deps = { auth: AuthService; config: Config; idempotency: IdempotencyService; instant: InstantService };

export const instantModule = (ctx: Deps) => {
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
