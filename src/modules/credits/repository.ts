import { columnList, insertStatement, rowEncoder, rowMapper } from "../../db/rows";
import { type CreditLedgerRow, creditLedger } from "../../db/schema";
import { allStatements, inPowersOfTwo, padded, placeholders, type Sql } from "../../db/sql";

const LEDGER_COLUMNS = columnList(creditLedger);
const toLedgerRow = rowMapper(creditLedger);
const encode = rowEncoder(creditLedger);
const INSERT = insertStatement(creditLedger);
// The same INSERT up to its VALUES keyword, for several rows.
const MULTI_INSERT = INSERT.slice(0, INSERT.indexOf("VALUES") + "VALUES".length);
const COLUMNS_PER_ROW = LEDGER_COLUMNS.split(", ").length;

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

  /**
   * Locks these users' rows for the rest of the transaction and reads their balances (the first step of a
   * set-based charge: decide in memory, then write with `takeMany`). An update that changes nothing is the
   * portable way to lock a row as it is read (see db/sql.ts).
   */
  async lockAccounts(
    userIds: readonly string[],
  ): Promise<Map<string, { credits: number; unlimited: boolean }>> {
    if (userIds.length === 0) return new Map();
    const list = padded(userIds);
    const rows = await this.#sql.all<{ id: string; credits: number; unlimited: number | boolean }>(
      `UPDATE users SET credits = credits WHERE id IN (${placeholders(list.length)})
       RETURNING id, credits, unlimited`,
      list,
    );
    return new Map(rows.map((r) => [r.id, { credits: r.credits, unlimited: Boolean(r.unlimited) }]));
  }

  /**
   * Takes each amount from its user in one statement, guarded as `take` is; the new balances. A user whose
   * balance no longer covers the amount is left as it is and missing from the answer.
   */
  async takeMany(amounts: ReadonlyMap<string, number>, now: number): Promise<Map<string, number>> {
    if (amounts.size === 0) return new Map();
    // Padded with copies of the last pair: a user matched twice by equal rows is still updated once.
    const pairs = padded([...amounts]);
    const params: (string | number)[] = [now, ...pairs.flat()];
    const rows = await this.#sql.all<{ id: string; credits: number }>(
      `UPDATE users SET credits = credits - CAST(v.column2 AS INTEGER), updated_at = ?
       FROM (VALUES ${Array(pairs.length).fill("(?, ?)").join(", ")}) AS v
       WHERE users.id = v.column1 AND NOT users.unlimited AND users.credits >= CAST(v.column2 AS INTEGER)
       RETURNING users.id AS id, users.credits AS credits`,
      params,
    );
    return new Map(rows.map((r) => [r.id, r.credits]));
  }

  /** Ledger rows, a statement per run of a power-of-two length (see db/sql.ts). */
  async insertMany(rows: readonly CreditLedgerRow[]): Promise<void> {
    const row = `(${placeholders(COLUMNS_PER_ROW)})`;
    await allStatements(
      inPowersOfTwo(rows).map((run) =>
        this.#sql.run(`${MULTI_INSERT} ${Array(run.length).fill(row).join(", ")}`, run.flatMap(encode)),
      ),
    );
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
