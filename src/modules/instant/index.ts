import { Elysia } from "elysia";
import type { AppContext } from "../../context";
import { authPlugin } from "../auth/plugin";
import { idempotent } from "../idempotency/service";
import { InstantBody } from "./model";
import { TokenBucket } from "./rate-limit";

/** 429 with `Retry-After` (thrown errors carry no headers, so this one is answered directly). */
function rateLimited(waitMs: number): Response {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000));
  const body = {
    error: {
      code: "rate_limited",
      message: `too many instant claims; retry in ${seconds} s`,
      details: { retryAfterMs: waitMs },
    },
  };
  return new Response(JSON.stringify(body), {
    status: 429,
    headers: { "content-type": "application/json; charset=utf-8", "retry-after": String(seconds) },
  });
}

export const instantModule = (ctx: AppContext) => {
  const limiter = new TokenBucket(ctx.config.INSTANT_RATE_PER_MIN);
  return new Elysia({ prefix: "/api", name: "instant" }).use(authPlugin(ctx.auth)).post(
    "/generate/instant",
    ({ principal, body, headers, set }) => {
      const user = ctx.auth.actingUser(principal, body.userId);
      const wait = limiter.take(user.id);
      if (wait > 0) return rateLimited(wait);
      return idempotent(
        ctx.idempotency,
        { ownerId: principal.user.id, key: headers["idempotency-key"], request: body, set },
        async () => ({ status: 200, body: await ctx.instant.claim(user, body.recipeId) }),
      );
    },
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
