import { columnList, insertStatement, rowEncoder, rowMapper } from "../../db/rows";
import { type ApiKey, apiKeys, type User, users } from "../../db/schema";
import { padded, placeholders, type Sql } from "../../db/sql";

const COLUMNS = columnList(apiKeys);
const toKey = rowMapper(apiKeys);
const encode = rowEncoder(apiKeys);
const INSERT = insertStatement(apiKeys);
const toUser = rowMapper(users);
const KEY_NAMES = COLUMNS.split(", ");
const USER_NAMES = columnList(users).split(", ");
// A key and its user in one row: the key's columns as they are, the user's prefixed with `u_`.
const KEY_AND_USER = [
  ...KEY_NAMES.map((c) => `k.${c} AS ${c}`),
  ...USER_NAMES.map((c) => `u.${c} AS u_${c}`),
].join(", ");

/** The `api_keys` table: hashed keys, several per user. */
export class KeyRepository {
  readonly #sql: Sql;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** Inserts a key; with `ifAbsent`, a key whose hash exists already is left as it is. */
  async insert(k: ApiKey, ifAbsent = false): Promise<void> {
    await this.#sql.run(ifAbsent ? `${INSERT} ON CONFLICT DO NOTHING` : INSERT, encode(k));
  }

  async get(id: string): Promise<ApiKey | null> {
    const row = await this.#sql.get(`SELECT ${COLUMNS} FROM api_keys WHERE id = ?`, [id]);
    return row ? toKey(row) : null;
  }

  /**
   * The keys with these SHA-256 hashes, each with its user, in one statement: how every request
   * authenticates (concurrent requests batched, db/batch.ts).
   */
  async withUsersByHash(hashes: string[]): Promise<Map<string, { key: ApiKey; user: User }>> {
    const list = padded(hashes);
    const rows = await this.#sql.all<Record<string, unknown>>(
      `SELECT ${KEY_AND_USER} FROM api_keys k JOIN users u ON u.id = k.user_id
       WHERE k.hash IN (${placeholders(list.length)})`,
      list,
    );
    const found = new Map<string, { key: ApiKey; user: User }>();
    for (const row of rows) {
      const user = toUser(Object.fromEntries(USER_NAMES.map((c) => [c, row[`u_${c}`]])));
      const key = toKey(Object.fromEntries(KEY_NAMES.map((c) => [c, row[c]])));
      found.set(key.hash, { key, user });
    }
    return found;
  }

  /** A user's keys, newest first. */
  async listOf(userId: string): Promise<ApiKey[]> {
    const rows = await this.#sql.all(
      `SELECT ${COLUMNS} FROM api_keys WHERE user_id = ? ORDER BY created_at DESC, id DESC`,
      [userId],
    );
    return rows.map(toKey);
  }

  /** Marks a key revoked at `now` unless it was already; the key as it is now, or null when unknown. */
  async revoke(id: string, now: number): Promise<ApiKey | null> {
    const row = await this.#sql.get(
      `UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING ${COLUMNS}`,
      [now, id],
    );
    return row ? toKey(row) : this.get(id);
  }

  async touch(id: string, now: number): Promise<void> {
    await this.#sql.run("UPDATE api_keys SET last_used_at = ? WHERE id = ?", [now, id]);
  }
}
