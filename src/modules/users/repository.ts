import { columnList, insertStatement, rowEncoder, rowMapper } from "../../db/rows";
import { type User, users } from "../../db/schema";
import { placeholders, type RawRow, type Sql } from "../../db/sql";

const COLUMNS = columnList(users);
const toUser = rowMapper(users);
const encode = rowEncoder(users);
const INSERT = insertStatement(users);

/** The `users` table. */
export class UserRepository {
  readonly #sql: Sql;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** Inserts `u`; throws `UniqueViolation` when its external id is taken under its parent. */
  async insert(u: User): Promise<void> {
    await this.#sql.run(INSERT, encode(u));
  }

  async get(id: string): Promise<User | null> {
    const row = await this.#sql.get(`SELECT ${COLUMNS} FROM users WHERE id = ?`, [id]);
    return row ? toUser(row) : null;
  }

  /** Up to `limit` users whose id or external id is `ref`. */
  async byIdOrExternalId(ref: string, limit: number): Promise<User[]> {
    const rows = await this.#sql.all(`SELECT ${COLUMNS} FROM users WHERE id = ? OR external_id = ? LIMIT ?`, [
      ref,
      ref,
      limit,
    ]);
    return rows.map(toUser);
  }

  async getMany(ids: readonly string[]): Promise<User[]> {
    if (ids.length === 0) return [];
    const rows = await this.#sql.all(
      `SELECT ${COLUMNS} FROM users WHERE id IN (${placeholders(ids.length)})`,
      ids,
    );
    return rows.map(toUser);
  }

  /** The user with `externalId` under `parentId` (null: a top-level user). */
  async byExternalId(parentId: string | null, externalId: string): Promise<User | null> {
    const row = await this.#sql.get<RawRow>(
      parentId === null
        ? `SELECT ${COLUMNS} FROM users WHERE parent_id IS NULL AND external_id = ?`
        : `SELECT ${COLUMNS} FROM users WHERE parent_id = ? AND external_id = ?`,
      parentId === null ? [externalId] : [parentId, externalId],
    );
    return row ? toUser(row) : null;
  }

  /** Users in id order, all or one parent's, up to `limit`. */
  async list(parentId: string | undefined, limit: number): Promise<User[]> {
    const rows = parentId
      ? await this.#sql.all(`SELECT ${COLUMNS} FROM users WHERE parent_id = ? ORDER BY id LIMIT ?`, [
          parentId,
          limit,
        ])
      : await this.#sql.all(`SELECT ${COLUMNS} FROM users ORDER BY id LIMIT ?`, [limit]);
    return rows.map(toUser);
  }
}
