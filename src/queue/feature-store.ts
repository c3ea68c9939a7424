import type { Statement } from "bun:sqlite";
import type { Job, JobItem } from "../db/schema";
import type { SqliteClient } from "../db/sqlite";
import { toItem, toJob } from "./store";

/** How many times a transfer reads the next ready job after losing one to another transaction. */
const MAX_TAKE_ATTEMPTS = 3;

/** How many users' parents the transfer keeps (see #ownerScopes). */
const MAX_CACHED_PARENTS = 10_000;

/**
 * The statements features ask of the queue's tables (DESIGN §11: the queue owns `jobs` and `job_items`; a
 * feature never writes SQL on them): a job's credit columns, a recipe's backlog levels, and the instant
 * transfer of a finished job to a new owner. Each states its contract first; Queue exposes them. Each runs
 * through the connection's client, so it never joins another caller's open transaction.
 */
export class FeatureStore {
  readonly #sql: SqliteClient;
  readonly #credits: Statement;
  readonly #addRefund: Statement;
  readonly #takeBackRefund: Statement;
  readonly #items: Statement;
  readonly #ready: Statement;
  readonly #readyUpTo: Statement;
  readonly #inFlight: Statement;
  readonly #inFlightForRecipes: Statement;
  readonly #hasCompleted: Statement;
  readonly #oldestCompleted: Statement;
  readonly #take: Statement;
  readonly #firstItem: Statement;
  readonly #parentOf: Statement;
  /** The count upsert of a transfer, by how many scopes it moves (2 to 4). */
  readonly #countMoves = new Map<number, Statement>();
  /** Users' parents as read: a user is never re-parented nor deleted, so an entry never goes stale. */
  readonly #parents = new Map<string, string | null>();

  constructor(sql: SqliteClient) {
    this.#sql = sql;
    const db = sql.db;
    this.#credits = db.prepare(
      "SELECT credits_charged AS charged, credits_refunded AS refunded FROM jobs WHERE id = ?",
    );
    // Guarded so the refunded total can never pass the charge, whatever the caller computed.
    this.#addRefund = db.prepare(
      `UPDATE jobs SET credits_refunded = credits_refunded + ?1
       WHERE id = ?2 AND credits_refunded + ?1 <= credits_charged`,
    );
    this.#takeBackRefund = db.prepare(
      "UPDATE jobs SET credits_refunded = credits_refunded - ?1 WHERE id = ?2 AND credits_refunded >= ?1",
    );
    this.#items = db.prepare("SELECT * FROM job_items WHERE job_id = ? ORDER BY idx");
    // The backlog counts ride jobs_recipe_idx (recipe_id, owner_id, status, finished_at, id).
    this.#ready = db.prepare(
      `SELECT count(*) AS n, min(finished_at) AS oldest FROM jobs
       WHERE recipe_id = ? AND owner_id = ? AND status = 'completed'`,
    );
    this.#readyUpTo = db.prepare(
      `SELECT count(*) AS n FROM (SELECT 1 FROM jobs
       WHERE recipe_id = ?1 AND owner_id = ?2 AND status = 'completed' LIMIT ?3)`,
    );
    this.#inFlight = db.prepare(
      "SELECT count(*) AS n FROM jobs WHERE recipe_id = ? AND owner_id = ? AND status IN ('queued', 'active')",
    );
    // One index probe per recipe (the list is short), never a scan of the owner's history.
    this.#inFlightForRecipes = db.prepare(
      `SELECT count(*) AS n FROM jobs WHERE recipe_id IN (SELECT value FROM json_each(?1)) AND owner_id = ?2
       AND status IN ('queued', 'active')`,
    );
    this.#hasCompleted = db.prepare(
      "SELECT 1 FROM jobs WHERE recipe_id = ? AND owner_id = ? AND status = 'completed' LIMIT 1",
    );
    // The oldest ready job, read whole: the claim answers with it, so nothing is read back after the take.
    this.#oldestCompleted = db.prepare(
      `SELECT * FROM jobs WHERE recipe_id = ? AND owner_id = ? AND status = 'completed'
       ORDER BY finished_at, id LIMIT 1`,
    );
    // Takes the job only if it is still the giver's ready job, so two claims can never both get it (under
    // SQLite's write lock it always is; the guard keeps the pair right where transactions run side by side).
    // The metadata is written whole from the row read: a json_set and a RETURNING * here cost more than the
    // rest of the UPDATE. finished_at moves to the claim: the new owner's retention counts from when they got
    // the image, and `keep` (which shielded the unclaimed image from retention) is cleared.
    this.#take = db.prepare(
      `UPDATE jobs SET owner_id = ?1, credits_charged = ?2, finished_at = ?3, updated_at = ?3, metadata = ?4
       WHERE id = ?5 AND owner_id = ?6 AND status = 'completed'`,
    );
    // job_counts keeps ended jobs per owner scope ('u:<owner>', 'c:<owner's parent>'); a transfer moves one.
    this.#parentOf = db.prepare("SELECT parent_id AS p FROM users WHERE id = ?");
    this.#firstItem = db.prepare(
      `SELECT key, json_extract(input, '$.prompt') AS prompt, (SELECT count(*) FROM job_items WHERE job_id = ?1) AS count
       FROM job_items WHERE job_id = ?1 AND idx = 0`,
    );
  }

  /** A job's charge and what was refunded of it; null for an unknown job. */
  credits(jobId: string): Promise<{ charged: number; refunded: number } | null> {
    return this.#sql.exclusive(
      () => this.#credits.get(jobId) as { charged: number; refunded: number } | null,
    );
  }

  /** Adds `amount` to the job's refunded total unless that would pass its charge; false when refused. */
  addRefund(jobId: string, amount: number): Promise<boolean> {
    return this.#sql.exclusive(() => this.#addRefund.run(amount, jobId).changes === 1);
  }

  /** Takes `amount` back off the refunded total (a retry re-charged it); false when less was refunded. */
  takeBackRefund(jobId: string, amount: number): Promise<boolean> {
    return this.#sql.exclusive(() => this.#takeBackRefund.run(amount, jobId).changes === 1);
  }

  /** The job's items in order (read inside the caller's transaction when one is open). */
  items(jobId: string): Promise<JobItem[]> {
    return this.#sql.exclusive(() => (this.#items.all(jobId) as Record<string, unknown>[]).map(toItem));
  }

  /** Completed jobs of a recipe held by `ownerId` (a backlog), and when the oldest finished. */
  ready(recipeId: string, ownerId: string): Promise<{ n: number; oldest: number | null }> {
    return this.#sql.exclusive(
      () => this.#ready.get(recipeId, ownerId) as { n: number; oldest: number | null },
    );
  }

  /** The same count, stopping at `limit` (a level check that never counts past what it needs). */
  readyUpTo(recipeId: string, ownerId: string, limit: number): Promise<number> {
    return this.#sql.exclusive(() => (this.#readyUpTo.get(recipeId, ownerId, limit) as { n: number }).n);
  }

  /** Queued or active jobs of a recipe held by `ownerId`. */
  inFlight(recipeId: string, ownerId: string): Promise<number> {
    return this.#sql.exclusive(() => (this.#inFlight.get(recipeId, ownerId) as { n: number }).n);
  }

  /** Queued or active jobs of any of `recipeIds` held by `ownerId`. */
  inFlightForRecipes(recipeIds: string[], ownerId: string): Promise<number> {
    return this.#sql.exclusive(
      () => (this.#inFlightForRecipes.get(JSON.stringify(recipeIds), ownerId) as { n: number }).n,
    );
  }

  /** Whether `ownerId` holds a completed job of the recipe (a cheap look before queueing for the write lock). */
  hasCompleted(recipeId: string, ownerId: string): Promise<boolean> {
    return this.#sql.exclusive(() => this.#hasCompleted.get(recipeId, ownerId) != null);
  }

  /**
   * Moves the oldest completed job of `recipeId` held by `from` to `to`, charged `price`, with its ended-job
   * count moving between their scopes, in the caller's transaction. Returns the job as it is now, or null when
   * there was none left.
   */
  transferOldestCompleted(
    recipeId: string,
    from: string,
    to: string,
    price: number,
    now: number,
  ): Promise<Job | null> {
    return this.#sql.exclusive(() => this.#transferOldest(recipeId, from, to, price, now));
  }

  transferOldestCompletedMany(
    from: string,
    claims: readonly { recipeId: string; to: string; price: number }[],
    now: number,
  ): Promise<(Job | null)[]> {
    return this.#sql.exclusive(() =>
      claims.map((c) => this.#transferOldest(c.recipeId, from, c.to, c.price, now)),
    );
  }

  #transferOldest(recipeId: string, from: string, to: string, price: number, now: number): Job | null {
    // A guard that fails means another transaction took the job first; the next read finds the one after it.
    for (let attempt = 0; attempt < MAX_TAKE_ATTEMPTS; attempt++) {
      const row = this.#oldestCompleted.get(recipeId, from) as Record<string, unknown> | null;
      if (!row) return null;
      const job = toJob(row);
      const metadata = {
        ...job.metadata,
        keep: false,
        instant: true,
        claimedAt: now,
        generatedAt: job.finishedAt,
      };
      if (this.#take.run(to, price, now, JSON.stringify(metadata), job.id, from).changes === 0) continue;
      this.#moveCount(job, from, to);
      return { ...job, ownerId: to, creditsCharged: price, finishedAt: now, updatedAt: now, metadata };
    }
    return null;
  }

  /** Moves an ended job's count from `from`'s scopes to `to`'s, in one statement. */
  #moveCount(job: Job, from: string, to: string): void {
    const params: (string | number)[] = [];
    for (const scope of this.#ownerScopes(from)) params.push(scope, job.type, job.status, -1);
    for (const scope of this.#ownerScopes(to)) params.push(scope, job.type, job.status, 1);
    const rows = params.length / 4;
    let stmt = this.#countMoves.get(rows);
    if (!stmt) {
      stmt = this.#sql.db.prepare(
        `INSERT INTO job_counts (scope, type, status, n) VALUES ${Array(rows).fill("(?, ?, ?, ?)").join(", ")}
         ON CONFLICT (scope, type, status) DO UPDATE SET n = job_counts.n + excluded.n`,
      );
      this.#countMoves.set(rows, stmt);
    }
    stmt.run(...params);
  }

  /** The count scopes a job of `ownerId` belongs to besides everyone's: its owner's, and its owner's parent's. */
  #ownerScopes(ownerId: string): string[] {
    let parent = this.#parents.get(ownerId);
    if (parent === undefined) {
      parent = (this.#parentOf.get(ownerId) as { p: string | null } | null)?.p ?? null;
      // Bounded: a server with many end users keeps only the recent ones.
      if (this.#parents.size >= MAX_CACHED_PARENTS) this.#parents.clear();
      this.#parents.set(ownerId, parent);
    }
    return parent ? [`u:${ownerId}`, `c:${parent}`] : [`u:${ownerId}`];
  }

  /** The first item's key and prompt, and how many items the job has (a job list's summary line). */
  firstItem(jobId: string): Promise<{ key: string; prompt: string | null; count: number } | null> {
    return this.#sql.exclusive(
      () => this.#firstItem.get(jobId) as { key: string; prompt: string | null; count: number } | null,
    );
  }
}
