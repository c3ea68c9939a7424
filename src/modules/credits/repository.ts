import { columnList, insertStatement, rowEncoder, rowMapper } from "../../db/rows";
import { type CreditLedgerRow, creditLedger } from "../../db/schema";
import type { Sql } from "../../db/sql";

const LEDGER_COLUMNS = columnList(creditLedger);
const toLedgerRow = rowMapper(creditLedger);
const encode = rowEncoder(creditLedger);
const INSERT = insertStatement(creditLedger);

/**
 * The credit ledger and the balance it keeps (`users.credits`, a column the users module leaves to credits:
 * only these statements change it, each with its ledger row in the caller's transaction).
 */
export class CreditRepository {
  readonly #sql: Sql;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /**
   * Takes `amount` from a limited user with at least that much; the new balance, or null when refused. The
   * balance check and the debit are one statement: two concurrent charges can never both pass it.
   */
  async take(userId: string, amount: number, now: number): Promise<number | null> {
    const row = await this.#sql.get<{ credits: number }>(
      `UPDATE users SET credits = credits - ?, updated_at = ?
       WHERE id = ? AND NOT unlimited AND credits >= ? RETURNING credits`,
      [amount, now, userId, amount],
    );
    return row?.credits ?? null;
  }

  /** Adds `amount`; the new balance, or null for an unknown user. */
  async give(userId: string, amount: number, now: number): Promise<number | null> {
    const row = await this.#sql.get<{ credits: number }>(
      "UPDATE users SET credits = credits + ?, updated_at = ? WHERE id = ? RETURNING credits",
      [amount, now, userId],
    );
    return row?.credits ?? null;
  }

  /** A user's balance and whether they are unlimited, or null. */
  async account(userId: string): Promise<{ credits: number; unlimited: boolean } | null> {
    // A raw boolean is 0/1 on SQLite and false/true on PostgreSQL.
    const row = await this.#sql.get<{ credits: number; unlimited: number | boolean }>(
      "SELECT credits, unlimited FROM users WHERE id = ?",
      [userId],
    );
    return row ? { credits: row.credits, unlimited: Boolean(row.unlimited) } : null;
  }

  async insert(row: CreditLedgerRow): Promise<void> {
    await this.#sql.run(INSERT, encode(row));
  }

  /** Up to `limit` ledger rows of a user, newest first, before the id `before` when given. */
  async page(userId: string, before: string | null, limit: number): Promise<CreditLedgerRow[]> {
    const rows = before
      ? await this.#sql.all(
          `SELECT ${LEDGER_COLUMNS} FROM credit_ledger WHERE user_id = ? AND id < ? ORDER BY id DESC LIMIT ?`,
          [userId, before, limit],
        )
      : await this.#sql.all(
          `SELECT ${LEDGER_COLUMNS} FROM credit_ledger WHERE user_id = ? ORDER BY id DESC LIMIT ?`,
          [userId, limit],
        );
    return rows.map(toLedgerRow);
  }
}
