import type { Database } from "bun:sqlite";

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
 * Statements come from bun:sqlite's per-connection cache (`query`), compiled on first use.
 */
export class QueueDepth {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /** Queued jobs of `type` owned by `ownerId`, counted up to `cap` (the answer is min(count, cap)). */
  ownerQueued(ownerId: string, type: string, cap: number): number {
    return (this.#db.query(OWNER_QUEUED).get(ownerId, type, cap) as { n: number }).n;
  }

  /** Queued jobs of every type and owner (delayed ones too), counted up to `cap`. */
  queued(cap = Number.MAX_SAFE_INTEGER): number {
    return (this.#db.query(QUEUED).get(cap) as { n: number }).n;
  }

  /** The owners with the most queued jobs of `type`, most first (reads every queued job of the type). */
  busiestOwners(type: string, limit: number): { ownerId: string; queued: number }[] {
    return this.#db.query(BUSIEST).all(type, limit) as { ownerId: string; queued: number }[];
  }

  /** Per type with a due job waiting: when its longest-waiting one became due (epoch ms). */
  oldestDueByType(now: number): Map<string, number> {
    const rows = this.#db.query(OLDEST_DUE_BY_TYPE).all(now) as { type: string; t: number }[];
    return new Map(rows.map((r) => [r.type, r.t]));
  }
}
