import { countOf, notFound } from "../errors";
import type { CreditService } from "../modules/credits/service";
import type { UserService } from "../modules/users/service";
import { parse, printJsonOr, UsageError } from "./args";

/** What this file needs from the services, and nothing more. */
type Deps = { credits: CreditService; users: UserService };

const USAGE = `usage: easel credits grant <user> <n> [--note <text>] [--json]
       easel credits debit <user> <n> [--note <text>] [--json]
       easel credits balance <user> [--json]
  <user> is a user's id or external id`;

/** `easel credits …`: grants, debits and balances through the same ledger the API writes. */
export async function creditsCommand(ctx: Deps, argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { note: { type: "string" }, json: { type: "boolean" } });
  const [sub, ref, amountText] = positionals;
  if (!ref) throw new UsageError(USAGE);
  const json = Boolean(values.json);
  const user = await ctx.users.findByRef(ref);
  if (!user) throw notFound("user");
  switch (sub) {
    case "grant":
    case "debit": {
      const amount = Number(amountText);
      if (!Number.isInteger(amount) || amount <= 0)
        throw new UsageError(`<n> must be a positive integer\n${USAGE}`);
      const note = values.note ?? "cli";
      const credits =
        sub === "grant"
          ? await ctx.credits.credit(user.id, amount, "grant", { note })
          : (await ctx.credits.debit(user, amount, "debit", { note })).balance;
      printJsonOr(
        json,
        { userId: user.id, credits },
        () =>
          `${sub === "grant" ? "granted" : "debited"} ${amount}; ${user.name} (${user.id}) now has ${countOf(credits, "credit")}`,
      );
      return 0;
    }
    case "balance": {
      const { entries } = await ctx.credits.ledger(user.id, { limit: 20 });
      const credits = await ctx.credits.balance(user.id);
      printJsonOr(json, { userId: user.id, credits, unlimited: user.unlimited, ledger: entries }, () =>
        [
          `${user.name} (${user.id}): ${countOf(credits, "credit")}${user.unlimited ? " (unlimited)" : ""}`,
          ...entries.map(
            (e) =>
              `  ${new Date(e.createdAt).toISOString()}  ${e.reason.padEnd(7)} ${String(e.delta).padStart(6)} → ${e.balanceAfter}${e.jobId ? `  job ${e.jobId}` : ""}${e.note ? `  ${e.note}` : ""}`,
          ),
        ].join("\n"),
      );
      return 0;
    }
    default:
      throw new UsageError(USAGE);
  }
}
