import { columnList, insertStatement, rowEncoder, rowMapper } from "../../db/rows";
import { type ApiKey, apiKeys } from "../../db/schema";
import type { Sql } from "../../db/sql";

const COLUMNS = columnList(apiKeys);
const toKey = rowMapper(apiKeys);
const encode = rowEncoder(apiKeys);
const INSERT = insertStatement(apiKeys);

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

  /** The key with this SHA-256 hash (how every request authenticates), or null. */
  async byHash(hash: string): Promise<ApiKey | null> {
    const row = await this.#sql.get(`SELECT ${COLUMNS} FROM api_keys WHERE hash = ?`, [hash]);
    return row ? toKey(row) : null;
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
