import { eq, or } from "drizzle-orm";
import type { Db } from "../../db/client";
import { type User, users } from "../../db/schema";
import { conflict, notFound } from "../../errors";

/**
 * A user by internal id or, failing that, by external id (operators type whichever they have). An external
 * id shared by end users of different apps is ambiguous: the internal id is then required.
 */
export function findUserByRef(db: Db, ref: string): User {
  const rows = db
    .select()
    .from(users)
    .where(or(eq(users.id, ref), eq(users.externalId, ref)))
    .limit(3)
    .all();
  const byId = rows.find((u) => u.id === ref);
  if (byId) return byId;
  const [only, second] = rows;
  if (!only) throw notFound("user");
  if (second)
    throw conflict("ambiguous_user", `several users have the external id "${ref}"; use the internal id`);
  return only;
}
