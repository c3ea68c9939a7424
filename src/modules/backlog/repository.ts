import type { Sql } from "../../db/sql";

export type StateRow = {
  consecutive_failures: number;
  last_failure_at: number | null;
  last_error: string | null;
};

/** The `backlog_state` table: each recipe's failure streak. */
export class BacklogRepository {
  readonly #sql: Sql;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  state(recipeId: string): Promise<StateRow | null> {
    return this.#sql.get<StateRow>(
      "SELECT consecutive_failures, last_failure_at, last_error FROM backlog_state WHERE recipe_id = ?",
      [recipeId],
    );
  }

  /** Counts a failure at `now`; one outside `windowMs` of the last starts a new streak. */
  async failed(recipeId: string, now: number, error: string, windowMs: number): Promise<void> {
    // The budget is N failures per window, not N ever.
    await this.#sql.run(
      `INSERT INTO backlog_state (recipe_id, consecutive_failures, last_failure_at, last_error, updated_at)
       VALUES (?, 1, ?, ?, ?)
       ON CONFLICT (recipe_id) DO UPDATE SET
         consecutive_failures = CASE
           WHEN backlog_state.last_failure_at IS NULL OR ? - backlog_state.last_failure_at > ? THEN 1
           ELSE backlog_state.consecutive_failures + 1 END,
         last_failure_at = ?, last_error = ?, updated_at = ?`,
      [recipeId, now, error, now, now, windowMs, now, error, now],
    );
  }

  /** A success at `now` ends the recipe's streak. */
  async succeeded(recipeId: string, now: number): Promise<void> {
    await this.#sql.run(
      `INSERT INTO backlog_state (recipe_id, consecutive_failures, last_success_at, updated_at) VALUES (?, 0, ?, ?)
       ON CONFLICT (recipe_id) DO UPDATE SET consecutive_failures = 0, last_success_at = ?, updated_at = ?`,
      [recipeId, now, now, now, now],
    );
  }
}
