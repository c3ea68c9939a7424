import type { Sql } from "../db/sql";
import type { QueueDepthReader } from "./backend";

/** The four statements a `QueueDepth` reads, in one database's spelling. */
export type DepthStatements = {
  ownerQueued: string;
  queued: string;
  busiest: string;
  oldestDueByType: string;
};

// Bounded: stops at `cap` rows, so a check costs at most the limit it enforces, however deep the queue.
// SQLite is told which partial index to read; PostgreSQL's planner picks the same ones unaided.
export const SQLITE_DEPTH: DepthStatements = {
  ownerQueued: `SELECT count(*) AS n FROM (SELECT 1 FROM jobs INDEXED BY jobs_owner_queued_idx
  WHERE status = 'queued' AND owner_id = ? AND type = ? LIMIT ?)`,
  queued:
    "SELECT count(*) AS n FROM (SELECT 1 FROM jobs INDEXED BY jobs_claim_idx WHERE status = 'queued' LIMIT ?)",
  busiest: `SELECT owner_id AS "ownerId", count(*) AS queued FROM jobs INDEXED BY jobs_owner_queued_idx
  WHERE status = 'queued' AND owner_id IS NOT NULL AND type = ?
  GROUP BY owner_id ORDER BY queued DESC, owner_id LIMIT ?`,
  oldestDueByType: `SELECT type, min(run_at) AS t FROM jobs INDEXED BY jobs_claim_idx
  WHERE status = 'queued' AND run_at <= ? GROUP BY type`,
};

export const PG_DEPTH: DepthStatements = {
  ownerQueued: `SELECT count(*) AS n FROM (SELECT 1 FROM jobs
  WHERE status = 'queued' AND owner_id = ? AND type = ? LIMIT ?) q`,
  queued: "SELECT count(*) AS n FROM (SELECT 1 FROM jobs WHERE status = 'queued' LIMIT ?) q",
  busiest: `SELECT owner_id AS "ownerId", count(*) AS queued FROM jobs
  WHERE status = 'queued' AND owner_id IS NOT NULL AND type = ?
  GROUP BY owner_id ORDER BY queued DESC, owner_id LIMIT ?`,
  oldestDueByType: `SELECT type, min(run_at) AS t FROM jobs
  WHERE status = 'queued' AND run_at <= ? GROUP BY type`,
};

/**
 * How deep the queue is: the counts back-pressure and the status views read. Every statement reads one of
 * the partial indexes over queued rows only (jobs_owner_queued_idx, jobs_claim_idx), never finished jobs.
 * Statements come from the client's cache, compiled on first use; `statements` spells them for the database.
 */
export class QueueDepth implements QueueDepthReader {
  readonly #sql: Sql;
  readonly #q: DepthStatements;

  constructor(sql: Sql, statements: DepthStatements) {
    this.#sql = sql;
    this.#q = statements;
  }

  /** Queued jobs of `type` owned by `ownerId`, counted up to `cap` (the answer is min(count, cap)). */
  async ownerQueued(ownerId: string, type: string, cap: number): Promise<number> {
    return (await this.#sql.get<{ n: number }>(this.#q.ownerQueued, [ownerId, type, cap]))!.n;
  }

  /** Queued jobs of every type and owner (delayed ones too), counted up to `cap`. */
  async queued(cap = Number.MAX_SAFE_INTEGER): Promise<number> {
    return (await this.#sql.get<{ n: number }>(this.#q.queued, [cap]))!.n;
  }

  /** The owners with the most queued jobs of `type`, most first (reads every queued job of the type). */
  busiestOwners(type: string, limit: number): Promise<{ ownerId: string; queued: number }[]> {
    return this.#sql.all<{ ownerId: string; queued: number }>(this.#q.busiest, [type, limit]);
  }

  /** Per type with a due job waiting: when its longest-waiting one became due (epoch ms). */
  async oldestDueByType(now: number): Promise<Map<string, number>> {
    const rows = await this.#sql.all<{ type: string; t: number }>(this.#q.oldestDueByType, [now]);
    return new Map(rows.map((r) => [r.type, r.t]));
  }
}
