import type { ApiKey } from "../db/schema";
import { notFound } from "../errors";
import { ExpiresInSeconds, type KeyView } from "../modules/auth/model";
import type { AuthService } from "../modules/auth/service";
import type { UserService } from "../modules/users/service";
import { parse, printJsonOr, UsageError, utcMinute } from "./args";

/** What this file needs from the services, and nothing more. */
type Deps = { auth: AuthService; users: UserService };

const USAGE = `usage: easel keys list <user> [--json]
       easel keys create <user> --name <name> [--expires-in <duration>] [--json]
       easel keys revoke <keyId> [--json]
       easel keys rotate <keyId> [--expires-in <duration>] [--json]
  <user> is a user's id or external id; <duration> is a number with s, m, h or d (e.g. 90d)`;

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `--expires-in 90d` → seconds, within the bounds the HTTP API allows. */
function expiresIn(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d+)([smhd])$/.exec(text.trim());
  const seconds = m ? Number(m[1]) * UNIT_SECONDS[m[2]!]! : Number.NaN;
  const parsed = ExpiresInSeconds.safeParse(seconds);
  if (!parsed.success) throw new UsageError(`--expires-in must be between 1m and 3660d, e.g. 90d\n${USAGE}`);
  return parsed.data;
}

function line(k: KeyView): string {
  const until =
    k.revokedAt !== null ? `revoked ${utcMinute(k.revokedAt)}` : `expires ${utcMinute(k.expiresAt)}`;
  return `${k.id}  ${k.prefix}…  ${k.status.padEnd(7)}  ${k.name}  (created ${utcMinute(k.createdAt)}, last used ${utcMinute(k.lastUsedAt)}, ${until})`;
}

/**
 * `easel keys …`: an operator's key management on the data dir (no key needed: access to the data dir is
 * access to everything). The same service as `/api/keys`; a new key is printed once.
 */
export async function keysCommand(ctx: Deps, argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    name: { type: "string" },
    "expires-in": { type: "string" },
    json: { type: "boolean" },
  });
  const [sub, ref, extra] = positionals;
  if (!ref || extra !== undefined) throw new UsageError(USAGE);
  const json = Boolean(values.json);
  const keys = ctx.auth.keys;
  const existing = async (id: string): Promise<ApiKey> => (await keys.get(id)) ?? throwNotFound();
  switch (sub) {
    case "list": {
      const user = (await ctx.users.findByRef(ref)) ?? throwNotFound("user");
      const list = (await keys.listOf(user.id)).map((k) => keys.view(k));
      printJsonOr(json, { userId: user.id, keys: list }, () =>
        [
          `${user.name} (${user.id}): ${list.length} key${list.length === 1 ? "" : "s"}`,
          ...list.map(line),
        ].join("\n"),
      );
      return 0;
    }
    case "create": {
      if (!values.name?.trim()) throw new UsageError(`--name is required\n${USAGE}`);
      const user = (await ctx.users.findByRef(ref)) ?? throwNotFound("user");
      const { key, row } = await keys.create(user.id, values.name.trim(), {
        expiresInSeconds: expiresIn(values["expires-in"]),
      });
      printJsonOr(
        json,
        { ...keys.view(row), key },
        () => `${line(keys.view(row))}\nAPI key (shown once): ${key}`,
      );
      return 0;
    }
    case "revoke": {
      const revoked = keys.view((await keys.revoke((await existing(ref)).id))!);
      printJsonOr(json, revoked, () => `revoked ${line(revoked)}`);
      return 0;
    }
    case "rotate": {
      const { key, row, replaced } = await keys.rotate((await existing(ref)).id, {
        expiresInSeconds: expiresIn(values["expires-in"]),
      });
      const view = { ...keys.view(row), key, rotatedFrom: replaced.id };
      printJsonOr(
        json,
        view,
        () => `rotated ${replaced.id} (now revoked)\n${line(view)}\nAPI key (shown once): ${key}`,
      );
      return 0;
    }
    default:
      throw new UsageError(USAGE);
  }
}

function throwNotFound(what = "key"): never {
  throw notFound(what);
}
