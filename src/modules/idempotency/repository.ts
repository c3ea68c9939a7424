import type { Sql } from "../../db/sql";

/** What a repeated request needs of a key's row. */
export type KeyRow = {
  request_hash: string;
  status: number;
  response: string;
  locked_by: string | null;
  locked_until: number | null;
};

/** The `idempotency_keys` table: reservations of a request's key, then its stored answer. */
export class IdempotencyRepository {
  readonly #sql: Sql;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** Reserves (owner, key) for `holder` until `lockedUntil`; false when the key exists already. */
  async reserve(
    ownerId: string,
    key: string,
    requestHash: string,
    holder: string,
    now: number,
    lockedUntil: number,
  ): Promise<boolean> {
    // The primary key (owner, key) makes this the atomic reservation: of N racing inserts exactly one lands.
    const { changes } = await this.#sql.run(
      `INSERT INTO idempotency_keys (key, owner_id, request_hash, status, response, created_at, locked_by, locked_until)
       VALUES (?, ?, ?, 0, 'null', ?, ?, ?) ON CONFLICT DO NOTHING`,
      [key, ownerId, requestHash, now, holder, lockedUntil],
    );
    return changes === 1;
  }

  /** The key's row, or null. */
  read(ownerId: string, key: string): Promise<KeyRow | null> {
    return this.#sql.get<KeyRow>(
      "SELECT request_hash, status, response, locked_by, locked_until FROM idempotency_keys WHERE owner_id = ? AND key = ?",
      [ownerId, key],
    );
  }

  /** Takes over a reservation still held by `deadHolder`; of several processes taking over, one wins. */
  async takeOver(
    ownerId: string,
    key: string,
    requestHash: string,
    holder: string,
    deadHolder: string | null,
    now: number,
    lockedUntil: number,
  ): Promise<boolean> {
    const { changes } = await this.#sql.run(
      `UPDATE idempotency_keys SET locked_by = ?, locked_until = ?, request_hash = ?, created_at = ?
       WHERE owner_id = ? AND key = ? AND status = 0 AND locked_by IS NOT DISTINCT FROM ?`,
      [holder, lockedUntil, requestHash, now, ownerId, key, deadHolder],
    );
    return changes === 1;
  }

  /** Stores the answer if `holder` still holds the reservation; false when answered (or taken) already. */
  async answer(
    ownerId: string,
    key: string,
    holder: string,
    status: number,
    response: string,
  ): Promise<boolean> {
    const { changes } = await this.#sql.run(
      `UPDATE idempotency_keys SET status = ?, response = ?, locked_by = NULL, locked_until = NULL
       WHERE owner_id = ? AND key = ? AND status = 0 AND locked_by = ?`,
      [status, response, ownerId, key, holder],
    );
    return changes === 1;
  }

  /** Gives an unanswered reservation of `holder` back. */
  async release(ownerId: string, key: string, holder: string): Promise<void> {
    await this.#sql.run(
      "DELETE FROM idempotency_keys WHERE owner_id = ? AND key = ? AND status = 0 AND locked_by = ?",
      [ownerId, key, holder],
    );
  }

  /** Deletes up to `limit` answered keys created before `before` and reservations whose lease ended before `now`. */
  async prune(before: number, now: number, limit: number): Promise<number> {
    const { changes } = await this.#sql.run(
      `DELETE FROM idempotency_keys WHERE (owner_id, key) IN (SELECT owner_id, key FROM idempotency_keys
         WHERE created_at < ? AND (status <> 0 OR locked_until < ?) LIMIT ?)`,
      [before, now, limit],
    );
    return changes;
  }
}
