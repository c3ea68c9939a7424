import { ROLES, type Role } from "../db/schema";
import type { Sql } from "../db/sql";
import { countOf } from "../errors";
import type { AuthService } from "../modules/auth/service";
import type { CreditService } from "../modules/credits/service";
import type { UserService } from "../modules/users/service";
import { parse, UsageError } from "./args";

/** What this file needs from the services, and nothing more. */
type Deps = { auth: AuthService; credits: CreditService; sql: Sql; users: UserService };

const USAGE =
  "usage: easel users create --name <name> --role <admin|app|user> [--external-id <id>] " +
  "[--credits <n>] [--unlimited] [--json]";

/** `easel users create`: makes a user (optionally with starting credits or unlimited) and prints its API key once. */
export async function usersCommand(ctx: Deps, argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    name: { type: "string" },
    role: { type: "string" },
    "external-id": { type: "string" },
    credits: { type: "string" },
    unlimited: { type: "boolean" },
    json: { type: "boolean" },
  });
  if (positionals[0] !== "create" || !values.name || !values.role) throw new UsageError(USAGE);
  const role = values.role as Role;
  if (!ROLES.includes(role) || role === "system")
    throw new UsageError(`--role must be admin, app or user\n${USAGE}`);
  const credits = values.credits === undefined ? 0 : Number(values.credits);
  if (!Number.isSafeInteger(credits) || credits < 0)
    throw new UsageError(`--credits must be a whole number ≥ 0\n${USAGE}`);
  // One transaction: the user, its key and its first grant exist together or not at all.
  const { user, key } = await ctx.sql.transaction(async () => {
    const user = await ctx.users.create({
      name: values.name!,
      role,
      externalId: values["external-id"],
      unlimited: values.unlimited ?? false,
    });
    if (credits > 0) await ctx.credits.credit(user.id, credits, "grant", { note: "easel users create" });
    return { user: { ...user, credits }, key: (await ctx.auth.createKey(user.id, "cli")).key };
  });
  if (values.json) process.stdout.write(`${JSON.stringify({ user, key })}\n`);
  else {
    const balance = user.unlimited ? "unlimited credits" : countOf(credits, "credit");
    process.stdout.write(
      `created ${role} ${user.name} (${user.id}), ${balance}\nAPI key (shown once): ${key}\n`,
    );
  }
  return 0;
}
