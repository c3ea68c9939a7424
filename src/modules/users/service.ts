import { and, eq, inArray, isNull, or } from "drizzle-orm";
import type { Db } from "../../db/client";
import { type Role, type User, users } from "../../db/schema";
import { conflict } from "../../errors";

export type NewUser = {
  name: string;
  role: Role;
  externalId?: string | null;
  parentId?: string | null;
  credits?: number;
  unlimited?: boolean;
};

/** Users: the people and apps that own jobs, keys and credits. */
export class UserService {
  readonly #db: Db;
  readonly #now: () => number;

  constructor(db: Db, now: () => number = Date.now) {
    this.#db = db;
    this.#now = now;
  }

  create(u: NewUser): User {
    // The unique index treats NULL parents as distinct, so top-level external ids are checked here.
    if (!u.parentId && u.externalId && this.#topLevel(u.externalId)) {
      throw conflict("user_exists", "a user with that externalId already exists");
    }
    const now = this.#now();
    const row = {
      id: Bun.randomUUIDv7(),
      name: u.name,
      role: u.role,
      externalId: u.externalId ?? null,
      parentId: u.parentId ?? null,
      credits: 0,
      unlimited: u.unlimited ?? false,
      createdAt: now,
      updatedAt: now,
    };
    try {
      this.#db.insert(users).values(row).run();
    } catch (err) {
      if (String(err).includes("UNIQUE"))
        throw conflict("user_exists", "a user with that externalId already exists");
      throw err;
    }
    return row;
  }

  get(id: string): User | null {
    return this.#db.select().from(users).where(eq(users.id, id)).get() ?? null;
  }

  /**
   * A user by internal id or, failing that, by external id (operators and admins type whichever they have).
   * An external id shared by end users of different apps is ambiguous (409): the internal id is then needed.
   */
  findByRef(ref: string): User | null {
    const rows = this.#db
      .select()
      .from(users)
      .where(or(eq(users.id, ref), eq(users.externalId, ref)))
      .limit(3)
      .all();
    const byId = rows.find((u) => u.id === ref);
    if (byId) return byId;
    const [only, second] = rows;
    if (second)
      throw conflict("ambiguous_user", `several users have the external id "${ref}"; use the internal id`);
    return only ?? null;
  }

  /** Several users by id, in one query. */
  getMany(ids: readonly string[]): User[] {
    return ids.length
      ? this.#db
          .select()
          .from(users)
          .where(inArray(users.id, [...ids]))
          .all()
      : [];
  }

  /** The end user `parent` knows as `externalId`, if it exists. */
  findChild(parent: User, externalId: string): User | null {
    return (
      this.#db
        .select()
        .from(users)
        .where(and(eq(users.parentId, parent.id), eq(users.externalId, externalId)))
        .get() ?? null
    );
  }

  /** The end user an app knows as `externalId`, created on first use (DESIGN §7). */
  findOrCreateChild(parent: User, externalId: string): User {
    const found = this.findChild(parent, externalId);
    if (found) return found;
    try {
      return this.create({ name: externalId, role: "user", externalId, parentId: parent.id });
    } catch {
      // Two requests for the same new user raced; the other one created it.
      return this.findChild(parent, externalId)!;
    }
  }

  /** The one user with a role and no parent, e.g. the admin or `system_backlog`, created when missing. */
  ensureSystemUser(externalId: string, role: Role, name: string): User {
    const found = this.#topLevel(externalId);
    if (found) return found;
    try {
      return this.create({ name, role, externalId, unlimited: role === "admin" || role === "system" });
    } catch (err) {
      // Another process (a CLI command, a second server) created it at the same moment.
      const raced = this.#topLevel(externalId);
      if (raced) return raced;
      throw err;
    }
  }

  #topLevel(externalId: string): User | null {
    return (
      this.#db
        .select()
        .from(users)
        .where(and(isNull(users.parentId), eq(users.externalId, externalId)))
        .get() ?? null
    );
  }

  list(opts: { parentId?: string; limit: number }): User[] {
    const q = this.#db.select().from(users);
    const filtered = opts.parentId ? q.where(eq(users.parentId, opts.parentId)) : q;
    return filtered.orderBy(users.id).limit(opts.limit).all();
  }
}
