import { columnList, insertStatement, rowEncoder, rowMapper } from "../../db/rows";
import { type Card, cards } from "../../db/schema";
import type { Sql, SqlParam } from "../../db/sql";

const COLUMNS = columnList(cards);
const toCard = rowMapper(cards);
const encode = rowEncoder(cards);
const INSERT = insertStatement(cards);

/** The `cards` table. */
export class CardRepository {
  readonly #sql: Sql;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  async insert(card: Card): Promise<void> {
    await this.#sql.run(INSERT, encode(card));
  }

  async get(id: string): Promise<Card | null> {
    const row = await this.#sql.get(`SELECT ${COLUMNS} FROM cards WHERE id = ?`, [id]);
    return row ? toCard(row) : null;
  }

  /** Replaces the data, bumps the version and records when its render is due; the card as it is now. */
  async bump(id: string, data: unknown, renderDueAt: number, now: number): Promise<Card | null> {
    const row = await this.#sql.get(
      `UPDATE cards SET data = ?, version = version + 1, render_due_at = ?, updated_at = ? WHERE id = ?
       RETURNING ${COLUMNS}`,
      [JSON.stringify(data), renderDueAt, now, id],
    );
    return row ? toCard(row) : null;
  }

  /** Newest first, `limit` of them, optionally one owner's, one template's, before the id `before`. */
  async page(opts: {
    ownerId: string | null;
    template: string | null;
    before: string | null;
    limit: number;
  }): Promise<Card[]> {
    const where: string[] = [];
    const params: SqlParam[] = [];
    if (opts.ownerId !== null) where.push("owner_id = ?") && params.push(opts.ownerId);
    if (opts.template !== null) where.push("template = ?") && params.push(opts.template);
    if (opts.before !== null) where.push("id < ?") && params.push(opts.before);
    const rows = await this.#sql.all(
      `SELECT ${COLUMNS} FROM cards${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?`,
      [...params, opts.limit],
    );
    return rows.map(toCard);
  }

  async delete(id: string): Promise<void> {
    await this.#sql.run("DELETE FROM cards WHERE id = ?", [id]);
  }

  async imageKey(id: string): Promise<string | null> {
    return (
      (await this.#sql.get<{ image_key: string | null }>("SELECT image_key FROM cards WHERE id = ?", [id]))
        ?.image_key ?? null
    );
  }

  /** Points the card at a rendered image unless a version at least as new is rendered; false when refused. */
  async point(id: string, version: number, key: string, imageUrl: string): Promise<boolean> {
    const { changes } = await this.#sql.run(
      `UPDATE cards SET image_key = ?, image_url = ?, rendered_version = ?, render_error = NULL
       WHERE id = ? AND rendered_version < ?`,
      [key, imageUrl, version, id, version],
    );
    return changes === 1;
  }

  async renderFailed(id: string, error: unknown): Promise<void> {
    await this.#sql.run("UPDATE cards SET render_error = ? WHERE id = ?", [JSON.stringify(error), id]);
  }
}
