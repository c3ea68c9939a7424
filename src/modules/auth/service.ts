import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { errors as joseErrors, jwtVerify, SignJWT } from "jose";
import { LookupBatcher } from "../../db/batch";
import type { ApiKey, Role, User } from "../../db/schema";
import type { Sql } from "../../db/sql";
import { forbidden, notFound, unauthorized } from "../../errors";
import type { UserService } from "../users/service";
import { ADMIN_KEY_NAME, hashKey, KEY_PREFIX, KeyService, randomToken } from "./keys";
import { KeyRepository } from "./repository";

export { ADMIN_KEY_NAME, hashKey, KEY_PREFIX } from "./keys";

/** Who is calling: the user behind the key or token, and how they proved it. */
export type Principal = { user: User; via: "key" | "token"; keyId?: string };

/** An admin's API key: sees and may act on everything (an admin's client token is only a user's). */
export const isAdminKey = (p: Principal): boolean => p.user.role === "admin" && p.via === "key";

export type AuthOptions = {
  dataDir: string;
  adminKey?: string;
  jwtSecret?: string;
  tokenTtlSeconds: number;
  now?: () => number;
  /**
   * The database is reached over the network (PostgreSQL): the key lookups of concurrent requests are
   * gathered into one statement per turn of the event loop (db/batch.ts).
   * @defaultValue false
   */
  networked?: boolean;
};

/** API keys (hashed), client tokens (HS256 JWTs) and the bootstrap admin. */
export class AuthService {
  readonly #keyRows: KeyRepository;
  readonly #users: UserService;
  readonly #o: AuthOptions;
  readonly #secret: Uint8Array;
  readonly #now: () => number;
  /** Key management (create, list, revoke, rotate). */
  readonly keys: KeyService;
  /** last_used_at is written at most once a minute per key, so auth never writes on the hot path. */
  readonly #lastTouched = new Map<string, number>();
  /** A key by its hash, with its user. */
  readonly #byHash: LookupBatcher<string, { key: ApiKey; user: User }>;

  constructor(sql: Sql, userService: UserService, opts: AuthOptions) {
    this.#keyRows = new KeyRepository(sql);
    this.#byHash = new LookupBatcher((hashes) => this.#keyRows.withUsersByHash(hashes), {
      enabled: opts.networked ?? false,
    });
    this.#users = userService;
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
    this.keys = new KeyService(sql, this.#now);
    this.#secret = new TextEncoder().encode(opts.jwtSecret ?? persistedSecret(opts.dataDir));
  }

  /** Creates a key for a user; the plain key is returned once and never stored. */
  async createKey(userId: string, name: string): Promise<{ key: string; id: string; prefix: string }> {
    const { key, row } = await this.keys.create(userId, name);
    return { key, id: row.id, prefix: row.prefix };
  }

  async revokeKey(id: string): Promise<void> {
    await this.keys.revoke(id);
  }

  /**
   * A key `p` may manage: its own, its end users' (app keys), anyone's (admin keys). Any other id is 404,
   * exactly as if it did not exist.
   */
  async manageableKey(p: Principal, id: string): Promise<ApiKey> {
    const key = await this.keys.get(id);
    if (!key || p.via !== "key" || !(await this.canAccess(p, key.userId))) throw notFound("key");
    return key;
  }

  /**
   * Whose keys a request means: the caller's, or the named user's (admin keys: anyone, by internal or
   * external id; apps: their end users, created on first use when `create`; users: only themselves).
   */
  async keyOwner(p: Principal, userId: string | undefined, opts: { create: boolean }): Promise<User> {
    if (!userId) return p.user;
    const user =
      opts.create && !isAdminKey(p) ? await this.actingUser(p, userId) : await this.findActingUser(p, userId);
    if (!user) throw notFound("user");
    return user;
  }

  /** The principal for an API key, or null when unknown, revoked or expired. */
  async authenticateKey(key: string): Promise<Principal | null> {
    const found = await this.#byHash.get(hashKey(key));
    const principal = found && (await this.#principalOf(found.key, found.user));
    if (!principal) return null;
    const now = this.#now();
    if (now - (this.#lastTouched.get(principal.keyId!) ?? 0) > 60_000) {
      this.#lastTouched.set(principal.keyId!, now);
      await this.#keyRows.touch(principal.keyId!, now);
    }
    return principal;
  }

  /**
   * The principal behind a key already proven once (a dashboard session names its key by id): null when the
   * key is unknown, revoked, or no longer the named user's.
   */
  async principalForKeyId(keyId: string, userId: string): Promise<Principal | null> {
    const principal = await this.#principalOf(await this.#keyRows.get(keyId));
    return principal?.user.id === userId ? principal : null;
  }

  /**
   * Nothing about a key is cached: a revocation or expiry holds from the very next request (authentication
   * reads the key and its user every time).
   */
  async #principalOf(k: ApiKey | null, read?: User): Promise<Principal | null> {
    if (!k || k.revokedAt !== null) return null;
    if (k.expiresAt !== null && k.expiresAt <= this.#now()) return null;
    const user = read ?? (await this.#users.get(k.userId));
    return user ? { user, via: "key", keyId: k.id } : null;
  }

  /** A short-lived client token for one user (browsers: read own jobs, subscribe to own events). */
  async issueToken(
    userId: string,
    ttlSeconds = this.#o.tokenTtlSeconds,
  ): Promise<{ token: string; expiresAt: number }> {
    const iat = Math.floor(this.#now() / 1000);
    const exp = iat + ttlSeconds;
    const token = await new SignJWT({ scope: "client" })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(userId)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .setIssuer("easel")
      .sign(this.#secret);
    return { token, expiresAt: exp * 1000 };
  }

  async authenticateToken(token: string): Promise<Principal | null> {
    try {
      const { payload } = await jwtVerify(token, this.#secret, {
        algorithms: ["HS256"],
        issuer: "easel",
        currentDate: new Date(this.#now()),
      });
      if (payload.scope !== "client" || !payload.sub) return null;
      const user = await this.#users.get(payload.sub);
      return user ? { user, via: "token" } : null;
    } catch (err) {
      if (err instanceof joseErrors.JOSEError) return null;
      throw err;
    }
  }

  /** Whether a credential is meant as an API key rather than a client token (a JWT: dotted, no `esk_`). */
  isKeyShaped(credential: string): boolean {
    return credential.startsWith(KEY_PREFIX) || !credential.includes(".");
  }

  /** Key or token, whichever `credential` is. */
  async authenticate(credential: string): Promise<Principal | null> {
    return this.isKeyShaped(credential)
      ? this.authenticateKey(credential)
      : this.authenticateToken(credential);
  }

  /**
   * Makes sure an admin can sign in. With ADMIN_KEY set, that key is the admin's (a changed value revokes the
   * old one). Without it, a key is generated on first start into DATA_DIR/admin-key and returned to be printed once.
   */
  async bootstrapAdmin(): Promise<{ admin: User; generatedKey?: string }> {
    const admin = await this.#users.ensureSystemUser("admin", "admin", "Admin");
    const envKeys = await this.#keyRows.listOf(admin.id);
    if (this.#o.adminKey) {
      const hash = hashKey(this.#o.adminKey);
      for (const k of envKeys)
        if (k.name === ADMIN_KEY_NAME && k.hash !== hash && !k.revokedAt) await this.revokeKey(k.id);
      if (!envKeys.some((k) => k.hash === hash && !k.revokedAt)) {
        await this.#keyRows.insert(
          {
            id: Bun.randomUUIDv7(),
            userId: admin.id,
            name: ADMIN_KEY_NAME,
            // A chosen key may be as short as 16 characters: store too little of it to help guess the rest.
            prefix: this.#o.adminKey.slice(0, 4),
            hash,
            createdAt: this.#now(),
            lastUsedAt: null,
            revokedAt: null,
            expiresAt: null,
          },
          true,
        );
      }
      return { admin };
    }
    if (envKeys.some((k) => k.name === "generated" && !k.revokedAt)) return { admin };
    const { key } = await this.createKey(admin.id, "generated");
    writeFileSync(join(this.#o.dataDir, "admin-key"), `${key}\n`, { mode: 0o600 });
    return { admin, generatedKey: key };
  }

  /**
   * The user a request acts for. Admins and apps may name an end user by `userId` (their own external id,
   * created on first use; admins may also give an internal id); users act only for themselves.
   */
  async actingUser(p: Principal, userId?: string | null): Promise<User> {
    if (!userId) return p.user;
    if (p.user.role === "user" || p.user.role === "system" || p.via === "token") {
      if (userId === p.user.id || userId === p.user.externalId) return p.user;
      throw forbidden("a user key can act only for itself");
    }
    if (p.user.role === "admin") {
      const byId = await this.#users.get(userId);
      if (byId) return byId;
    }
    return this.#users.findOrCreateChild(p.user, userId);
  }

  /**
   * Like `actingUser` for reads: never creates an end user; null when admins and apps name nobody. An admin
   * key names anyone, by internal or external id (UserService.findByRef).
   */
  async findActingUser(p: Principal, userId: string): Promise<User | null> {
    if ((p.user.role !== "admin" && p.user.role !== "app") || p.via === "token")
      return this.actingUser(p, userId);
    if (isAdminKey(p)) return this.#users.findByRef(userId);
    const byId = await this.#users.get(userId);
    if (byId && (p.user.role === "admin" || byId.id === p.user.id || byId.parentId === p.user.id))
      return byId;
    return this.#users.findChild(p.user, userId);
  }

  /** Whether `p` may see things owned by `ownerId` (admins: all; apps: themselves and their end users). */
  async canAccess(p: Principal, ownerId: string | null): Promise<boolean> {
    if (isAdminKey(p)) return true;
    if (!ownerId) return false;
    if (ownerId === p.user.id) return true;
    if (p.user.role !== "app" || p.via !== "key") return false;
    return (await this.#users.get(ownerId))?.parentId === p.user.id;
  }

  requireRole(p: Principal, roles: readonly Role[]): void {
    if (p.via === "token") throw forbidden("client tokens may only read their own jobs");
    if (!roles.includes(p.user.role)) throw forbidden(`requires role ${roles.join(" or ")}`);
  }

  static unauthorized = unauthorized;
}

/** JWT_SECRET's stand-in: a secret generated once into DATA_DIR/jwt-secret, so tokens survive restarts. */
export function persistedSecret(dataDir: string): string {
  const path = join(dataDir, "jwt-secret");
  if (existsSync(path)) return readFileSync(path, "utf8").trim();
  const secret = randomToken(48);
  writeFileSync(path, `${secret}\n`, { mode: 0o600 });
  return secret;
}
