import { Elysia } from "elysia";
import type { Config } from "../../config";
import { rateLimited } from "../../errors";
import { TokenBucket } from "../../rate-limit";
import { authPlugin } from "../auth/plugin";
import type { AuthService } from "../auth/service";
import { routeDoc } from "../docs/model";
import { idempotencyPlugin } from "../idempotency/plugin";
import type { IdempotencyService } from "../idempotency/service";
import { InstantBody, InstantClaimView } from "./model";
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
      async ({ principal, body, idem }) => {
        // After the key's check: a replayed request spends no token and is never refused with 429.
        const user = await ctx.auth.actingUser(principal, body.userId);
        const wait = limiter.take(user.id);
        if (wait > 0) throw rateLimited("too many instant claims", wait);
        return ctx.instant.claim(user, body.recipeId, idem);
      },
      {
        auth: ["admin", "app", "user"],
        idempotent: 200,
        body: InstantBody,
        response: { 200: InstantClaimView },
        detail: routeDoc({
          tags: ["instant"],
          summary:
            "Claim a ready backlog generation of a recipe at once, paying its credits (404/409 fallbackToModal when none)",
          requestExample: { recipeId: "fox-avatar", userId: "user-42" },
          errors: {
            402: "not enough credits (`insufficient_credits`, with `required` and `available`)",
            404: "no ready generation for this recipe (`no_instant_available`, `fallbackToModal: true`)",
            409: "the last ready generation was just claimed (`instant_taken`, `fallbackToModal: true`)",
            429: "too many instant claims (`Retry-After`)",
          },
        }),
      },
    );
};
