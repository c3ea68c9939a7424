import type { AppContext } from "../context";
import { ROLES, type Role } from "../db/schema";
import { parse, UsageError } from "./args";

const USAGE = "usage: easel users create --name <name> --role <admin|app|user> [--external-id <id>] [--json]";

/** `easel users create`: makes a user and prints its API key once. */
export function usersCommand(ctx: AppContext, argv: string[]): number {
  const { values, positionals } = parse(argv, {
    name: { type: "string" },
    role: { type: "string" },
    "external-id": { type: "string" },
    json: { type: "boolean" },
  });
  if (positionals[0] !== "create" || !values.name || !values.role) throw new UsageError(USAGE);
  const role = values.role as Role;
  if (!ROLES.includes(role) || role === "system")
    throw new UsageError(`--role must be admin, app or user\n${USAGE}`);
  const user = ctx.users.create({ name: values.name, role, externalId: values["external-id"] });
  const { key } = ctx.auth.createKey(user.id, "cli");
  if (values.json) process.stdout.write(`${JSON.stringify({ user, key })}\n`);
  else process.stdout.write(`created ${role} ${user.name} (${user.id})\nAPI key (shown once): ${key}\n`);
  return 0;
}
