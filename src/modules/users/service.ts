import type { Role, User } from "../../db/schema";
import { type Sql, UniqueViolation } from "../../db/sql";
import { conflict } from "../../errors";
import { UserRepository } from "./repository";

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
  readonly #users: UserRepository;
  readonly #now: () => number;

  constructor(sql: Sql, now: () => number = Date.now) {
    this.#users = new UserRepository(sql);
    this.#now = now;
  }

  async create(u: NewUser): Promise<User> {
    // The unique index treats NULL parents as distinct, so top-level external ids are checked here.
    if (!u.parentId && u.externalId && (await this.#topLevel(u.externalId))) {
      throw conflict("user_exists", "a user with that externalId already exists");
    }
    const now = this.#now();
    const row: User = {
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
      await this.#users.insert(row);
    } catch (err) {
      if (err instanceof UniqueViolation)
        throw conflict("user_exists", "a user with that externalId already exists");
      throw err;
    }
    return row;
  }

  get(id: string): Promise<User | null> {
    return this.#users.get(id);
  }

  /**
   * A user by internal id or, failing that, by external id (operators and admins type whichever they have).
   * An external id shared by end users of different apps is ambiguous (409): the internal id is then needed.
   */
  async findByRef(ref: string): Promise<User | null> {
    const rows = await this.#users.byIdOrExternalId(ref, 3);
    const byId = rows.find((u) => u.id === ref);
    if (byId) return byId;
    const [only, second] = rows;
    if (second)
      throw conflict("ambiguous_user", `several users have the external id "${ref}"; use the internal id`);
    return only ?? null;
  }

  /** Several users by id, in one query. */
  getMany(ids: readonly string[]): Promise<User[]> {
    return this.#users.getMany(ids);
  }

  /** The end user `parent` knows as `externalId`, if it exists. */
  findChild(parent: User, externalId: string): Promise<User | null> {
    return this.#users.byExternalId(parent.id, externalId);
  }

  /** The end user an app knows as `externalId`, created on first use (DESIGN §7). */
  async findOrCreateChild(parent: User, externalId: string): Promise<User> {
    const found = await this.findChild(parent, externalId);
    if (found) return found;
    try {
      return await this.create({ name: externalId, role: "user", externalId, parentId: parent.id });
    } catch {
      // Two requests for the same new user raced; the other one created it.
      return (await this.findChild(parent, externalId))!;
    }
  }

  /** The one user with a role and no parent, e.g. the admin or `system_backlog`, created when missing. */
  async ensureSystemUser(externalId: string, role: Role, name: string): Promise<User> {
    const found = await this.#topLevel(externalId);
    if (found) return found;
    try {
      return await this.create({ name, role, externalId, unlimited: role === "admin" || role === "system" });
    } catch (err) {
      // Another process (a CLI command, a second server) created it at the same moment.
      const raced = await this.#topLevel(externalId);
      if (raced) return raced;
      throw err;
    }
  }

  #topLevel(externalId: string): Promise<User | null> {
    return this.#users.byExternalId(null, externalId);
  }

  list(opts: { parentId?: string; limit: number }): Promise<User[]> {
    return this.#users.list(opts.parentId, opts.limit);
  }
}
