import type { SqliteClient } from "../db/sqlite";

// Bounded: stops at `cap` rows, so a check costs at most the limit it enforces, however deep the queue.
const OWNER_QUEUED = `SELECT count(*) AS n FROM (SELECT 1 FROM jobs INDEXED BY jobs_owner_queued_idx
  WHERE status = 'queued' AND owner_id = ? AND type = ? LIMIT ?)`;
const QUEUED =
  "SELECT count(*) AS n FROM (SELECT 1 FROM jobs INDEXED BY jobs_claim_idx WHERE status = 'queued' LIMIT ?)";
const BUSIEST = `SELECT owner_id AS ownerId, count(*) AS queued FROM jobs INDEXED BY jobs_owner_queued_idx
  WHERE status = 'queued' AND owner_id IS NOT NULL AND type = ?
  GROUP BY owner_id ORDER BY queued DESC, owner_id LIMIT ?`;
const OLDEST_DUE_BY_TYPE = `SELECT type, min(run_at) AS t FROM jobs INDEXED BY jobs_claim_idx
  WHERE status = 'queued' AND run_at <= ? GROUP BY type`;

/**
 * How deep the queue is: the counts back-pressure and the status views read. Every statement reads one of
 * the partial indexes over queued rows only (jobs_owner_queued_idx, jobs_claim_idx), never finished jobs.
 * Statements come from the client's cache, compiled on first use.
 */
export class QueueDepth {
  readonly #sql: SqliteClient;

  constructor(sql: SqliteClient) {
    this.#sql = sql;
  }

  /** Queued jobs of `type` owned by `ownerId`, counted up to `cap` (the answer is min(count, cap)). */
  async ownerQueued(ownerId: string, type: string, cap: number): Promise<number> {
    return (await this.#sql.get<{ n: number }>(OWNER_QUEUED, [ownerId, type, cap]))!.n;
  }

  /** Queued jobs of every type and owner (delayed ones too), counted up to `cap`. */
  async queued(cap = Number.MAX_SAFE_INTEGER): Promise<number> {
    return (await this.#sql.get<{ n: number }>(QUEUED, [cap]))!.n;
  }

  /** The owners with the most queued jobs of `type`, most first (reads every queued job of the type). */
  busiestOwners(type: string, limit: number): Promise<{ ownerId: string; queued: number }[]> {
    return this.#sql.all<{ ownerId: string; queued: number }>(BUSIEST, [type, limit]);
  }

  /** Per type with a due job waiting: when its longest-waiting one became due (epoch ms). */
  async oldestDueByType(now: number): Promise<Map<string, number>> {
    const rows = await this.#sql.all<{ type: string; t: number }>(OLDEST_DUE_BY_TYPE, [now]);
    return new Map(rows.map((r) => [r.type, r.t]));
  }
}
