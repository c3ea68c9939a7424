import { Elysia } from "elysia";
import type { User } from "../../db/schema";
import type { Sql } from "../../db/sql";
import { forbidden, notFound } from "../../errors";
import { authPlugin } from "../auth/plugin";
import { type AuthService, isAdminKey, type Principal } from "../auth/service";
import { routeDoc } from "../docs/model";
import { idempotencyPlugin } from "../idempotency/plugin";
import type { IdempotencyService } from "../idempotency/service";
import { AdjustCreditsBody, CreditsAdjustedView, CreditsQuery, CreditsView, UserIdParams } from "./model";
import type { CreditService } from "./service";

/** What this file needs from the services, and nothing more. */
type Deps = { auth: AuthService; credits: CreditService; sql: Sql; idempotency: IdempotencyService };

/**
 * Whose credits `p` may change: admins anyone's; apps only their own end users' (never their own). An app's
 * grant to an end user it has not named before creates that user, as a generation for them would: an app can
 * fund a player before their first image.
 */
async function adjustable(ctx: Deps, p: Principal, ref: string, grant: boolean): Promise<User> {
  const target =
    (await ctx.auth.findActingUser(p, ref)) ??
    (grant && !isAdminKey(p) ? await ctx.auth.actingUser(p, ref) : null);
  if (!target) throw notFound("user");
  if (!isAdminKey(p) && target.parentId !== p.user.id)
    throw forbidden("apps may change only their own end users' credits");
  return target;
}

export const creditsModule = (ctx: Deps) =>
  new Elysia({ prefix: "/api", name: "credits" })
    .use(authPlugin(ctx.auth))
    .use(idempotencyPlugin(ctx.idempotency))
    .get(
      "/credits",
      async ({ principal, query }) => {
        const user = query.userId ? await ctx.auth.findActingUser(principal, query.userId) : principal.user;
        if (!user) throw notFound("user");
        const page = await ctx.credits.ledger(user.id, { limit: query.limit, cursor: query.cursor });
        return {
          userId: user.id,
          credits: await ctx.credits.balance(user.id),
          unlimited: user.unlimited,
          creditsEnabled: ctx.credits.enabled,
          ledger: page.entries,
          nextCursor: page.nextCursor,
        };
      },
      {
        auth: "token",
        query: CreditsQuery,
        response: { 200: CreditsView },
        detail: { tags: ["credits"], summary: "Your balance and recent ledger (apps/admins: ?userId=)" },
      },
    )
    .post(
      "/users/:id/credits",
      ({ principal, params, body, idem }) =>
        ctx.sql.transaction(async () => {
          const user = await adjustable(ctx, principal, params.id, body.reason === "grant");
          const ref = { note: body.note ?? null };
          const credits =
            body.reason === "grant"
              ? await ctx.credits.credit(user.id, body.amount, "grant", ref)
              : (await ctx.credits.debit(user, body.amount, "debit", ref)).balance;
          const answer = {
            userId: user.id,
            credits,
            ledger: (await ctx.credits.ledger(user.id, { limit: 1 })).entries,
          };
          await idem.commit(answer);
          return answer;
        }),
      {
        auth: ["admin", "app"],
        idempotent: 200,
        params: UserIdParams,
        body: AdjustCreditsBody,
        response: { 200: CreditsAdjustedView },
        detail: routeDoc({
          tags: ["credits"],
          summary: "Grant or debit credits (admins: anyone; apps: their end users), with a ledger note",
          requestExample: { amount: 50, reason: "grant", note: "order 1234" },
          errors: { 402: "a debit larger than the balance (`insufficient_credits`)" },
        }),
      },
    );
