import { Elysia } from "elysia";
import type { Db } from "../../db/client";
import type { User } from "../../db/schema";
import { transaction } from "../../db/tx";
import { forbidden, notFound } from "../../errors";
import { authPlugin } from "../auth/plugin";
import { type AuthService, isAdminKey, type Principal } from "../auth/service";
import { idempotencyPlugin } from "../idempotency/plugin";
import type { IdempotencyService } from "../idempotency/service";
import { AdjustCreditsBody, CreditsQuery, UserIdParams } from "./model";
import type { CreditService } from "./service";

/** What this file needs from the services, and nothing more. */
type Deps = { auth: AuthService; credits: CreditService; db: Db; idempotency: IdempotencyService };

/**
 * Whose credits `p` may change: admins anyone's; apps only their own end users' (never their own). An app's
 * grant to an end user it has not named before creates that user, as a generation for them would: an app can
 * fund a player before their first image.
 */
function adjustable(ctx: Deps, p: Principal, ref: string, grant: boolean): User {
  const target =
    ctx.auth.findActingUser(p, ref) ?? (grant && !isAdminKey(p) ? ctx.auth.actingUser(p, ref) : null);
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
      ({ principal, query }) => {
        const user = query.userId ? ctx.auth.findActingUser(principal, query.userId) : principal.user;
        if (!user) throw notFound("user");
        const page = ctx.credits.ledger(user.id, { limit: query.limit, cursor: query.cursor });
        return {
          userId: user.id,
          credits: ctx.credits.balance(user.id),
          unlimited: user.unlimited,
          creditsEnabled: ctx.credits.enabled,
          ledger: page.entries,
          nextCursor: page.nextCursor,
        };
      },
      {
        auth: "token",
        query: CreditsQuery,
        detail: { tags: ["credits"], summary: "Your balance and recent ledger (apps/admins: ?userId=)" },
      },
    )
    .post(
      "/users/:id/credits",
      ({ principal, params, body, idem }) =>
        transaction(ctx.db.$client, () => {
          const user = adjustable(ctx, principal, params.id, body.reason === "grant");
          const ref = { note: body.note ?? null };
          const credits =
            body.reason === "grant"
              ? ctx.credits.credit(user.id, body.amount, "grant", ref)
              : ctx.credits.debit(user, body.amount, "debit", ref).balance;
          const answer = {
            userId: user.id,
            credits,
            ledger: ctx.credits.ledger(user.id, { limit: 1 }).entries,
          };
          idem.commit(answer);
          return answer;
        }),
      {
        auth: ["admin", "app"],
        idempotent: 200,
        params: UserIdParams,
        body: AdjustCreditsBody,
        detail: {
          tags: ["credits"],
          summary: "Grant or debit credits (admins: anyone; apps: their end users), with a ledger note",
        },
      },
    );
