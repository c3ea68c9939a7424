import type { Sql } from "../../db/sql";

/** The `dashboard_sessions` table: one row per signed-in session, so signing out holds across restarts. */
export class SessionRepository {
  readonly #sql: Sql;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  async insert(s: {
    id: string;
    userId: string;
    keyId: string;
    createdAt: number;
    expiresAt: number;
  }): Promise<void> {
    await this.#sql.run(
      "INSERT INTO dashboard_sessions (id, user_id, key_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
      [s.id, s.userId, s.keyId, s.createdAt, s.expiresAt],
    );
  }

  /** Deletes the sessions that expired before `now`. */
  async deleteExpired(now: number): Promise<void> {
    await this.#sql.run("DELETE FROM dashboard_sessions WHERE expires_at < ?", [now]);
  }

  /** Whether the session is unrevoked and unexpired at `now`. */
  async live(id: string, now: number): Promise<boolean> {
    const row = await this.#sql.get(
      "SELECT id FROM dashboard_sessions WHERE id = ? AND revoked_at IS NULL AND expires_at > ?",
      [id, now],
    );
    return row !== null;
  }

  /** Revokes the session at `now` unless it already was. */
  async revoke(id: string, now: number): Promise<void> {
    await this.#sql.run("UPDATE dashboard_sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [
      now,
      id,
    ]);
  }
}
