import type { ApiKey } from "../../db/schema";
import type { Sql } from "../../db/sql";
import { conflict, notFound, unprocessable } from "../../errors";
import type { KeyStatus, KeyView } from "./model";
import { KeyRepository } from "./repository";

export const KEY_PREFIX = "esk_";

/** The name of the admin key that the ADMIN_KEY variable manages: only a new value of the variable replaces it. */
export const ADMIN_KEY_NAME = "ADMIN_KEY";

/** SHA-256 hex of a key: the only form a key is ever stored in. */
export function hashKey(key: string): string {
  return new Bun.CryptoHasher("sha256").update(key).digest("hex");
}

export function randomToken(bytes: number): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString("base64url");
}

/** A key just made: `key` is the secret, returned this once; `row` is what is stored (its hash). */
export type NewKey = { key: string; row: ApiKey };

export function keyStatus(k: ApiKey, now: number): KeyStatus {
  if (k.revokedAt !== null) return "revoked";
  if (k.expiresAt !== null && k.expiresAt <= now) return "expired";
  return "active";
}

/** What callers see of a key: everything but its hash. */
function keyView(k: ApiKey, now: number): KeyView {
  return {
    id: k.id,
    userId: k.userId,
    name: k.name,
    prefix: k.prefix,
    status: keyStatus(k, now),
    createdAt: k.createdAt,
    lastUsedAt: k.lastUsedAt,
    expiresAt: k.expiresAt,
    revokedAt: k.revokedAt,
  };
}

/**
 * The api_keys table: several keys per user, each with a name, a shown prefix, an optional expiry and a
 * revocation time. Who may manage which key is the caller's business (AuthService.manageableKey).
 */
export class KeyService {
  readonly #sql: Sql;
  readonly #keys: KeyRepository;
  readonly #now: () => number;

  constructor(sql: Sql, now: () => number) {
    this.#sql = sql;
    this.#keys = new KeyRepository(sql);
    this.#now = now;
  }

  /** Creates a key for a user; the plain key is returned once and never stored. No expiry: it never expires. */
  create(userId: string, name: string, opts: { expiresInSeconds?: number } = {}): Promise<NewKey> {
    const now = this.#now();
    const expiresAt = opts.expiresInSeconds === undefined ? null : now + opts.expiresInSeconds * 1000;
    return this.#insert(userId, name, now, expiresAt);
  }

  async #insert(userId: string, name: string, now: number, expiresAt: number | null): Promise<NewKey> {
    if (name === ADMIN_KEY_NAME) {
      throw unprocessable("reserved_name", `"${ADMIN_KEY_NAME}" names the key set by the ADMIN_KEY variable`);
    }
    const key = `${KEY_PREFIX}${randomToken(30)}`;
    const row: ApiKey = {
      id: Bun.randomUUIDv7(),
      userId,
      name,
      prefix: key.slice(0, 12),
      hash: hashKey(key),
      createdAt: now,
      lastUsedAt: null,
      revokedAt: null,
      expiresAt,
    };
    await this.#keys.insert(row);
    return { key, row };
  }

  view(k: ApiKey): KeyView {
    return keyView(k, this.#now());
  }

  get(id: string): Promise<ApiKey | null> {
    return this.#keys.get(id);
  }

  /** A user's keys, newest first, revoked and expired ones included (they say when they stopped). */
  listOf(userId: string): Promise<ApiKey[]> {
    return this.#keys.listOf(userId);
  }

  /**
   * Revokes a key; the next request with it gets 401 (authentication reads the row every time). Revoking
   * again keeps the first revocation time. Null when there is no such key.
   */
  revoke(id: string): Promise<ApiKey | null> {
    return this.#keys.revoke(id, this.#now());
  }

  /**
   * A new secret for the same owner and name; the old key is revoked in the same transaction, so exactly one
   * of the two works at any moment. The new key lives as long as the old one was meant to (from now), unless
   * `expiresInSeconds` says otherwise.
   */
  rotate(id: string, opts: { expiresInSeconds?: number } = {}): Promise<NewKey & { replaced: ApiKey }> {
    return this.#sql.transaction(async () => {
      const old = await this.get(id);
      if (!old) throw notFound("key");
      if (old.revokedAt !== null)
        throw conflict("key_revoked", "a revoked key cannot be rotated; create a new one");
      if (old.name === ADMIN_KEY_NAME) {
        throw conflict(
          "managed_key",
          "this key is the ADMIN_KEY variable's: change the variable to replace it",
        );
      }
      const now = this.#now();
      const lifetime = lifetimeMs(old, opts.expiresInSeconds);
      const replaced = (await this.revoke(old.id))!;
      return {
        ...(await this.#insert(old.userId, old.name, now, lifetime === null ? null : now + lifetime)),
        replaced,
      };
    });
  }
}

/** How long a rotated key's successor lives: as asked, else as long as the old key was meant to (null: for ever). */
function lifetimeMs(old: ApiKey, expiresInSeconds: number | undefined): number | null {
  if (expiresInSeconds !== undefined) return expiresInSeconds * 1000;
  return old.expiresAt === null ? null : old.expiresAt - old.createdAt;
}
