import type { Database, Statement } from "bun:sqlite";
import { columnList, rowAsInserted, rowMapper } from "../db/rows";
import {
  CLAIM_ORDER,
  type Job,
  type JobAttempt,
  type JobError,
  type JobItem,
  type JobStatus,
  jobAttempts,
  jobItems,
  jobs,
  PRIORITY_STEP_MS,
  TERMINAL_STATUSES,
  type TerminalStatus,
} from "../db/schema";
import { placeholders } from "../db/sql";
import { endedStalled, isStalled, leaseLostAttempt, requeuedStalled, tooManyStalls } from "./stalled";

/**
 * All of SQLite's queue SQL (PostgreSQL's is in pg/; both behind backend.ts). Hot paths use prepared statements on the raw bun:sqlite handle (drizzle's builder
 * costs more per call than the statement itself); every function states its contract first.
 */

type Row = Record<string, unknown>;

const ENDED_SQL = `(${TERMINAL_STATUSES.map((s) => `'${s}'`).join(", ")})`;
export const isTerminal = (s: JobStatus): s is TerminalStatus =>
  (TERMINAL_STATUSES as readonly string[]).includes(s);

const JOB_COLUMNS = columnList(jobs);

/** A job in one of these states can be run again by an operator's retry. */
export const RETRYABLE_STATUSES: ReadonlySet<string> = new Set(["failed", "partial", "cancelled"]);

const toAttempt = rowMapper(jobAttempts);

/** Maps a raw `jobs` row (snake_case, JSON as text) to the drizzle `Job` type. */
export const toJob: (r: Row) => Job = rowMapper(jobs);

/** Maps a raw `job_items` row to the drizzle `JobItem` type. */
export const toItem: (r: Row) => JobItem = rowMapper(jobItems);

/** What an enqueue writes: the insertable columns of `jobs` it sets, and the time it happened. */
export type NewJob = Pick<
  Job,
  | "id"
  | "type"
  | "input"
  | "priority"
  | "maxAttempts"
  | "runAt"
  | "timeoutMs"
  | "dedupeKey"
  | "ownerId"
  | "recipeId"
  | "creditsCharged"
  | "webhookUrl"
  | "metadata"
> & { now: number };

export type NewItem = { key: string; input: unknown };

/** A job as a finish settlement leaves it (the row the settlement's UPDATE wrote), in place. */
export function markFinished(job: Job, s: Extract<Settlement, { kind: "finish" }>, now: number): void {
  Object.assign(job, {
    status: s.status,
    result: s.result ?? null,
    error: s.error,
    finishedAt: now,
    updatedAt: now,
    lockedBy: null,
    lockedUntil: null,
  });
  if (s.status !== "failed") job.progress = 100;
}

export type Settlement =
  | {
      kind: "finish";
      job: Job;
      status: "completed" | "partial" | "failed";
      result: unknown;
      error: JobError | null;
    }
  | { kind: "requeue"; job: Job; runAt: number; error: JobError | null; refundAttempt: boolean };

export type QueueStats = {
  waiting: number;
  delayed: number;
  active: number;
  completed: number;
  partial: number;
  failed: number;
  cancelled: number;
  byType: Record<string, Record<string, number>>;
};

/**
 * Whose jobs a count covers: null for every job; else one owner's, and with `withEndUsers` also those of
 * the end users that owner (an app) created. The scope keys are `job_counts`' (`u:` own, `c:` children).
 */
export type CountScope = { ownerId: string; withEndUsers: boolean } | null;

function scopeKeys(scope: CountScope): string[] {
  if (scope === null) return [""];
  return scope.withEndUsers ? [`u:${scope.ownerId}`, `c:${scope.ownerId}`] : [`u:${scope.ownerId}`];
}

/**
 * A job entering (`from` null), leaving (`to` null) or changing status, for `job_counts` (terminal statuses
 * only) and, when a run ends (live to terminal), the `job_throughput` minute `endedAt` falls in.
 */
export type CountMove = {
  type: string;
  ownerId: string | null;
  from: JobStatus | null;
  to: JobStatus | null;
  endedAt?: number;
};

/**
 * Where a retention walk over one end status stopped: the type it walks (jobs_ended_idx is ordered by status,
 * type, finished_at) and the last row of the previous slice (`finishedAt` -1 at the start of a type).
 */
export type RetentionCursor = { type: string; finishedAt: number; id: string };

/**
 * One retention slice found inside the caller's transaction: the ids to delete, the cursor to continue from
 * (null when nothing of the status is left past the cutoff), and `delete`, which deletes them (after the
 * caller has taken what goes with them).
 */
export type RetentionSlice = {
  ids: string[];
  next: RetentionCursor | null;
  /**
   * Deletes the slice. With `moved` (inside `countingDeletes`), its count moves go there, to be applied once
   * for the whole transaction, instead of as grouped upserts of its own.
   */
  delete: (moved?: CountMove[]) => void;
};

export class QueueStore {
  readonly db: Database;
  readonly #insert: Statement;
  readonly #upsertDeduped: Statement;
  readonly #queuedCharge: Statement;
  readonly #insertItem: Statement;
  readonly #deleteItems: Statement;
  readonly #finish: Statement;
  readonly #requeue: Statement;
  readonly #attempt: Statement;
  readonly #supersede: Statement;
  readonly #heartbeat: Statement;
  readonly #progress: Statement;
  readonly #byId: Statement;
  readonly #items: Statement;
  readonly #itemAttempt: Statement;
  readonly #checkpoint: Statement;
  readonly #claimCache = new Map<string, Statement>();
  readonly #countsAll: Statement;
  readonly #countsOwner: Statement;
  readonly #countsApp: Statement;
  readonly #throughput: Statement;
  readonly #trimThroughput: Statement;
  readonly #retentionScan: Statement;
  /** Inside `countingDeletes`: the delete trigger stands aside, and slices hand their moves to the caller. */
  #countingDeletes = false;
  readonly #firstEndedType: Statement;
  readonly #endedTypeAfter: Statement;
  readonly #insertInputKey: Statement;
  readonly #deleteInputKeys: Statement;
  readonly #deleteByRowids: Statement;
  readonly #deleteChildren: Statement[];
  readonly #endedBefore: Statement;
  readonly #deferCounts: Statement;
  readonly #undeferCounts: Statement;
  readonly #addCount: Statement;
  readonly #addThroughput: Statement;
  readonly #parents: Statement;
  readonly #begin: Statement;
  readonly #commit: Statement;
  readonly #rollback: Statement;

  constructor(db: Database) {
    this.db = db;
    this.#begin = db.prepare("BEGIN IMMEDIATE");
    this.#commit = db.prepare("COMMIT");
    this.#rollback = db.prepare("ROLLBACK");
    this.#insert = db.prepare(
      `INSERT INTO jobs (id, type, status, priority, input, max_attempts, run_at, timeout_ms, dedupe_key, owner_id,
        recipe_id, credits_charged, webhook_url, metadata, created_at, updated_at)
       VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    // Debounce: the partial unique index allows one queued job per key; a second enqueue replaces its
    // input but keeps its run_at, so a steady stream still runs once per window with the latest data.
    this.#upsertDeduped = db.prepare(
      `INSERT INTO jobs (id, type, status, priority, input, max_attempts, run_at, timeout_ms, dedupe_key, owner_id,
        recipe_id, credits_charged, webhook_url, metadata, created_at, updated_at)
       VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (dedupe_key) WHERE status = 'queued' AND dedupe_key IS NOT NULL
       DO UPDATE SET input = excluded.input, priority = max(priority, excluded.priority),
         metadata = coalesce(excluded.metadata, metadata), timeout_ms = excluded.timeout_ms,
         max_attempts = excluded.max_attempts, webhook_url = excluded.webhook_url, recipe_id = excluded.recipe_id,
         credits_charged = excluded.credits_charged, updated_at = excluded.updated_at
       RETURNING ${JOB_COLUMNS}`,
    );
    this.#queuedCharge = db.prepare(
      "SELECT credits_charged AS c FROM jobs WHERE dedupe_key = ? AND status = 'queued'",
    );
    this.#insertItem = db.prepare(
      "INSERT INTO job_items (job_id, idx, key, input, status, attempts, updated_at) VALUES (?, ?, ?, ?, 'pending', 0, ?)",
    );
    this.#deleteItems = db.prepare("DELETE FROM job_items WHERE job_id = ?");
    this.#finish = db.prepare(
      `UPDATE jobs SET status = ?, result = ?, error = ?, progress = CASE WHEN ? = 'failed' THEN progress ELSE 100 END,
         finished_at = ?, updated_at = ?, locked_by = NULL, locked_until = NULL
       WHERE id = ? AND locked_by = ? AND status = 'active'`,
    );
    // OR IGNORE: if a newer job with the same dedupe key is already queued, the unique index refuses
    // this row; the caller then supersedes it instead (the newer job carries the latest data).
    this.#requeue = db.prepare(
      `UPDATE OR IGNORE jobs SET status = 'queued', run_at = ?, error = ?, attempts = attempts - ?,
         locked_by = NULL, locked_until = NULL, updated_at = ?
       WHERE id = ? AND locked_by = ? AND status = 'active'`,
    );
    this.#attempt = db.prepare(
      `INSERT INTO job_attempts (job_id, attempt, outcome, started_at, ended_at, error, retry_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#supersede = db.prepare(
      `UPDATE jobs SET status = 'cancelled', error = ?, finished_at = ?, updated_at = ?, locked_by = NULL, locked_until = NULL
       WHERE id = ? AND status = 'active'`,
    );
    // By primary key (a json_each list of ids): the lease renewal never scans.
    this.#heartbeat = db.prepare(
      `UPDATE jobs SET locked_until = ? WHERE id IN (SELECT value FROM json_each(?)) AND locked_by = ? AND status = 'active'
       RETURNING id`,
    );
    this.#progress = db.prepare(
      "UPDATE jobs SET progress = ?, progress_message = ?, updated_at = ? WHERE id = ? AND status = 'active'",
    );
    this.#byId = db.prepare(`SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ?`);
    this.#items = db.prepare("SELECT * FROM job_items WHERE job_id = ? ORDER BY idx");
    // Ended jobs from job_counts (`scope IN (?3, ?4)`: a single-key scope passes its key
    // twice); live ones counted here from their partial indexes, which cover type and owner_id, so this
    // reads the live queue's index entries and never a history row.
    const counts = (owner: string) =>
      db.prepare(
        `SELECT type, 'queued' AS s, count(*) AS n, sum(run_at > ?1) AS later FROM jobs INDEXED BY jobs_claim_idx
           WHERE status = 'queued'${owner} GROUP BY type
         UNION ALL SELECT type, 'active', count(*), 0 FROM jobs INDEXED BY jobs_active_lease_idx
           WHERE status = 'active'${owner} GROUP BY type
         UNION ALL SELECT type, status, sum(n), 0 FROM job_counts WHERE scope IN (?3, ?4) AND n > 0 GROUP BY type, status`,
      );
    this.#countsAll = counts("");
    this.#countsOwner = counts(" AND owner_id = ?2");
    // The app's end users are listed once (users_parent_idx) into the IN set, not looked up per queued row.
    this.#countsApp = counts(
      " AND owner_id IN (SELECT id FROM users WHERE id = ?2 UNION ALL SELECT id FROM users WHERE parent_id = ?2)",
    );
    this.#throughput = db.prepare(
      `SELECT minute, type, status, sum(n) AS n FROM job_throughput
       WHERE scope IN (?1, ?2) AND minute >= ?3 AND minute < ?4 GROUP BY minute, type, status`,
    );
    this.#trimThroughput = db.prepare(
      `DELETE FROM job_throughput WHERE rowid IN
         (SELECT rowid FROM job_throughput INDEXED BY job_throughput_minute_idx WHERE minute < ? LIMIT ?)`,
    );
    // Keyset pagination on (finished_at, id): kept jobs are stepped over once, not re-read by every slice.
    this.#deferCounts = db.prepare("INSERT INTO job_counts_deferred (id) VALUES (1)");
    this.#undeferCounts = db.prepare("DELETE FROM job_counts_deferred");
    this.#addCount = db.prepare(
      `INSERT INTO job_counts (scope, type, status, n) VALUES (?, ?, ?, ?)
       ON CONFLICT (scope, type, status) DO UPDATE SET n = n + excluded.n`,
    );
    this.#addThroughput = db.prepare(
      `INSERT INTO job_throughput (scope, minute, type, status, n) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (scope, minute, type, status) DO UPDATE SET n = n + excluded.n`,
    );
    this.#parents = db.prepare(
      "SELECT id, parent_id FROM users WHERE id IN (SELECT value FROM json_each(?)) AND parent_id IS NOT NULL",
    );
    this.#retentionScan = db.prepare(
      `SELECT rowid AS r, id, finished_at, type, owner_id,
         metadata IS NOT NULL AND coalesce(json_extract(metadata, '$.keep'), 0) AS keep
       FROM jobs INDEXED BY jobs_ended_idx
       WHERE status = ?1 AND type = ?2 AND finished_at IS NOT NULL AND finished_at < ?3
         AND (finished_at, id) > (?4, ?5)
       ORDER BY finished_at, id LIMIT ?6`,
    );
    this.#endedBefore = db.prepare(
      `SELECT 1 FROM jobs INDEXED BY jobs_ended_idx
       WHERE status = ? AND type = ? AND finished_at IS NOT NULL AND finished_at < ? LIMIT 1`,
    );
    // The types that ended in a status, one index seek each (a loose scan of jobs_ended_idx): types are few.
    this.#firstEndedType = db.prepare(
      `SELECT type FROM jobs INDEXED BY jobs_ended_idx WHERE status = ? AND finished_at IS NOT NULL
       ORDER BY status, type LIMIT 1`,
    );
    this.#endedTypeAfter = db.prepare(
      `SELECT type FROM jobs INDEXED BY jobs_ended_idx WHERE status = ? AND type > ? AND finished_at IS NOT NULL
       ORDER BY status, type LIMIT 1`,
    );
    this.#insertInputKey = db.prepare("INSERT OR IGNORE INTO job_input_keys (job_id, key) VALUES (?, ?)");
    this.#deleteInputKeys = db.prepare("DELETE FROM job_input_keys WHERE job_id = ?");
    // By rowid (from the scan): one b-tree seek per job fewer than by id.
    this.#deleteByRowids = db.prepare("DELETE FROM jobs WHERE rowid IN (SELECT value FROM json_each(?))");
    // What the foreign keys on jobs (schema.ts) would do to a deleted job's rows, as four set statements:
    // retention turns foreign keys off for its slices (see deleteFinishedSlice).
    this.#deleteChildren = [
      db.prepare("DELETE FROM job_items WHERE job_id IN (SELECT value FROM json_each(?))"),
      db.prepare("DELETE FROM job_attempts WHERE job_id IN (SELECT value FROM json_each(?))"),
      db.prepare("DELETE FROM job_input_keys WHERE job_id IN (SELECT value FROM json_each(?))"),
      db.prepare("UPDATE assets SET job_id = NULL WHERE job_id IN (SELECT value FROM json_each(?))"),
    ];
    this.#itemAttempt = db.prepare(
      "UPDATE job_items SET attempts = attempts + ?, updated_at = ? WHERE job_id = ? AND idx = ?",
    );
    this.#checkpoint = db.prepare(
      `UPDATE job_items SET status = ?, result = ?, asset_id = ?, error = ?, updated_at = ?
       WHERE job_id = ? AND idx = ? AND status = 'pending'`,
    );
  }

  /**
   * Runs `fn` in an IMMEDIATE transaction (the write lock is taken up front, so a read-then-write never
   * fails with SQLITE_BUSY_SNAPSHOT), or inside the caller's transaction when one is open.
   */
  tx<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    this.#begin.run();
    try {
      const out = fn();
      this.#commit.run();
      return out;
    } catch (err) {
      if (this.db.inTransaction) this.#rollback.run();
      throw err;
    }
  }

  /**
   * Inserts one job (and its items). With a dedupe key, upserts into the key's queued job instead: the new
   * request replaces the queued one's input, items, settings and price. Returns the row as stored, whether it
   * was deduped into an existing job, and what that job had been charged before (0 when new). Caller commits.
   */
  insert(
    job: NewJob,
    items?: NewItem[],
    inputKeys?: readonly string[],
  ): { job: Job; deduped: boolean; previousCharge: number } {
    const input = JSON.stringify(job.input);
    const metadata = job.metadata ? JSON.stringify(job.metadata) : null;
    const args = [
      job.id,
      job.type,
      job.priority,
      input,
      job.maxAttempts,
      job.runAt,
      job.timeoutMs,
      job.dedupeKey,
      job.ownerId,
      job.recipeId,
      job.creditsCharged,
      job.webhookUrl,
      metadata,
      job.now,
      job.now,
    ] as const;
    let stored: Job;
    let deduped = false;
    let previousCharge = 0;
    if (job.dedupeKey) {
      // Read before the upsert (RETURNING shows only the new price): the caller settles the difference.
      // Ownerless system work (card renders, cleanups) is never charged, so its hot path skips the read.
      if (job.ownerId)
        previousCharge = (this.#queuedCharge.get(job.dedupeKey) as { c: number } | null)?.c ?? 0;
      stored = toJob(this.#upsertDeduped.get(...args) as Row);
      deduped = stored.id !== job.id;
      if (deduped && items) this.#deleteItems.run(stored.id);
      // The replaced input's keys go with it: the sweep may take an upload only the old request named.
      if (deduped) this.#deleteInputKeys.run(stored.id);
    } else {
      this.#insert.run(...args);
      stored = syntheticJob(job);
    }
    if (items) {
      for (let i = 0; i < items.length; i++) {
        const item = items[i]!;
        this.#insertItem.run(stored.id, i, item.key, JSON.stringify(item.input ?? null), job.now);
      }
    }
    for (const key of inputKeys ?? []) this.#insertInputKey.run(stored.id, key);
    return { job: stored, deduped, previousCharge: deduped ? previousCharge : 0 };
  }

  /** Which of `keys` a job's input names (its `inputKeys` at enqueue): one index probe per key. */
  referencedInputKeys(keys: readonly string[]): Set<string> {
    if (keys.length === 0) return new Set();
    const rows = this.db
      .query("SELECT DISTINCT key FROM job_input_keys WHERE key IN (SELECT value FROM json_each(?))")
      .all(JSON.stringify(keys)) as { key: string }[];
    return new Set(rows.map((r) => r.key));
  }

  /**
   * Runs `fn` (inside the caller's transaction), then applies the moves it reports to `job_counts` and
   * `job_throughput` as a few grouped upserts in that same transaction, so the counts are exact after any
   * crash. Every path that ends, re-opens or deletes a job goes through here: a per-row trigger on `jobs`
   * costs the finish path 1.5 µs even when its WHEN is false, ~4.5 µs doing one count and one rollup upsert
   * (docs/BENCHMARKS.md), while a group-committed batch of hundreds of ends costs a few upserts here.
   * With `deletes`, the delete safety-net trigger stands aside meanwhile (the marker row never commits, so
   * other connections' triggers never skip a row). `fn` must report every job it re-statuses or deletes.
   */
  #counted<T>(fn: (moved: CountMove[]) => T, deletes = false): T {
    if (!this.db.inTransaction) throw new Error("#counted needs an open transaction");
    const moved: CountMove[] = [];
    // Only a deleting caller needs the delete trigger to stand aside; the hot paths skip both statements.
    if (deletes) this.#deferCounts.run();
    try {
      const out = fn(moved);
      if (moved.length === 0) return out;
      const { counts, ended } = this.#countDeltas(moved);
      for (const [key, n] of counts) {
        const [scope, type, status] = key.split("\u0000");
        if (n !== 0) this.#addCount.run(scope!, type!, status!, n);
      }
      for (const [key, n] of ended) {
        const [scope, minute, type, status] = key.split("\u0000");
        this.#addThroughput.run(scope!, Number(minute), type!, status!, n);
      }
      return out;
    } finally {
      if (deletes) this.#undeferCounts.run();
    }
  }

  /**
   * Claims up to `limit` due queued jobs of the given types for `workerId`, in aged order (CLAIM_ORDER:
   * priority first, but a waiting job gains a level per PRIORITY_STEP_MS, so none starves).
   * One UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING: SQLite runs it under the write lock, so two
   * workers (or processes) can never claim the same row.
   */
  claim(workerId: string, types: readonly string[], limit: number, now: number, leaseMs: number): Job[] {
    if (limit <= 0 || types.length === 0) return [];
    const key = types.join("\u0000");
    let stmt = this.#claimCache.get(key);
    if (!stmt) {
      stmt = this.db.prepare(claimSql(types.length));
      this.#claimCache.set(key, stmt);
    }
    const rows = stmt.all(workerId, now + leaseMs, now, now, now, ...types, limit) as Row[];
    const jobs = rows.map(toJob);
    // RETURNING gives no order guarantee; start them in claim order.
    jobs.sort((a, b) => claimRank(a) - claimRank(b) || a.runAt - b.runAt || (a.id < b.id ? -1 : 1));
    return jobs;
  }

  /**
   * Applies a group of settlements in one transaction. Each is guarded by `locked_by` + `active`, so a
   * late result from an attempt whose lease was taken over (or that was cancelled) changes nothing.
   * Returns the settlements that took effect (with `job` updated in place) and the superseded jobs.
   */
  settle(
    workerId: string,
    batch: Settlement[],
    now: number,
    onTerminal?: (job: Job) => void,
  ): { applied: Settlement[]; superseded: Job[] } {
    const applied: Settlement[] = [];
    const superseded: Job[] = [];
    this.tx(() =>
      this.#counted((moved) => {
        for (const s of batch) {
          const j = s.job;
          if (s.kind === "finish") {
            const res = this.#finish.run(
              s.status,
              s.result === undefined ? null : JSON.stringify(s.result),
              s.error ? JSON.stringify(s.error) : null,
              s.status,
              now,
              now,
              j.id,
              workerId,
            );
            if (res.changes === 0) continue;
            markFinished(j, s, now);
            moved.push({ type: j.type, ownerId: j.ownerId, from: "active", to: s.status, endedAt: now });
            onTerminal?.(j);
            applied.push(s);
          } else {
            const spent = s.refundAttempt ? 1 : 0;
            const errJson = s.error ? JSON.stringify(s.error) : null;
            const res = this.#requeue.run(s.runAt, errJson, spent, now, j.id, workerId);
            if (res.changes === 0) {
              if (j.dedupeKey && this.#isActiveMine(j.id, workerId)) {
                const err = supersededError();
                this.#supersede.run(JSON.stringify(err), now, now, j.id);
                Object.assign(j, { status: "cancelled", error: err, finishedAt: now, lockedBy: null });
                moved.push({
                  type: j.type,
                  ownerId: j.ownerId,
                  from: "active",
                  to: "cancelled",
                  endedAt: now,
                });
                onTerminal?.(j);
                superseded.push(j);
              }
              continue;
            }
            this.#attempt.run(j.id, j.attempts, "retried", j.startedAt, now, errJson, s.runAt);
            Object.assign(j, {
              status: "queued",
              runAt: s.runAt,
              error: s.error,
              attempts: j.attempts - spent,
              lockedBy: null,
              lockedUntil: null,
              updatedAt: now,
            });
            applied.push(s);
          }
        }
      }),
    );
    return { applied, superseded };
  }

  #isActiveMine(id: string, workerId: string): boolean {
    return (
      this.db
        .query("SELECT 1 FROM jobs WHERE id = ? AND locked_by = ? AND status = 'active'")
        .get(id, workerId) != null
    );
  }

  /** Extends the leases of `ids` held by `workerId`; returns those it still holds (others were cancelled or taken). */
  heartbeat(workerId: string, ids: string[], lockedUntil: number): Set<string> {
    const rows = this.#heartbeat.all(lockedUntil, JSON.stringify(ids), workerId) as { id: string }[];
    return new Set(rows.map((r) => r.id));
  }

  /** Records progress of an active job; a no-op once the job is no longer active. */
  progress(id: string, pct: number, message: string | null, now: number): void {
    this.#progress.run(pct, message, now, id);
  }

  get(id: string): Job | null {
    const row = this.#byId.get(id) as Row | null;
    return row ? toJob(row) : null;
  }

  items(jobId: string): JobItem[] {
    return (this.#items.all(jobId) as Row[]).map(toItem);
  }

  /** Counts an item attempt before it runs, so a crash mid-item still spends the attempt. */
  bumpItemAttempt(jobId: string, idx: number, delta: number, now: number): void {
    this.#itemAttempt.run(delta, now, jobId, idx);
  }

  /** Checkpoints a finished item; only a pending item changes, so a finished one is never overwritten. */
  checkpointItem(
    jobId: string,
    idx: number,
    status: "completed" | "failed",
    out: { result?: unknown; assetId?: string | null; error?: JobError | null },
    now: number,
  ): boolean {
    const res = this.#checkpoint.run(
      status,
      out.result === undefined ? null : JSON.stringify(out.result),
      out.assetId ?? null,
      out.error ? JSON.stringify(out.error) : null,
      now,
      jobId,
      idx,
    );
    return res.changes > 0;
  }

  /** Cancels a queued or active job. Returns the row after the change, or null when it was not cancellable. */
  cancel(id: string, now: number, onTerminal?: (job: Job) => void): Job | null {
    return this.tx(() =>
      this.#counted((moved) => {
        const err = JSON.stringify({
          code: "cancelled",
          message: "cancelled",
          retryable: false,
          refundable: true,
        });
        const res = this.db
          .query(
            `UPDATE jobs SET status = 'cancelled', error = ?, finished_at = ?, updated_at = ?, locked_by = NULL, locked_until = NULL
           WHERE id = ? AND status IN ('queued', 'active')`,
          )
          .run(err, now, now, id);
        if (res.changes === 0) return null;
        // Unfinished items end with their job; an item still running cannot checkpoint over this (pending only).
        this.db
          .query(
            "UPDATE job_items SET status = 'cancelled', updated_at = ? WHERE job_id = ? AND status = 'pending'",
          )
          .run(now, id);
        const job = this.get(id)!;
        // From queued or active: both live, so only the end is counted.
        moved.push({ type: job.type, ownerId: job.ownerId, from: "queued", to: "cancelled", endedAt: now });
        onTerminal?.(job);
        return job;
      }),
    );
  }

  /** The job's earlier attempts, oldest first (the latest is the job row itself). */
  attempts(jobId: string): Omit<JobAttempt, "jobId">[] {
    const rows = this.db
      .query(
        `SELECT attempt, outcome, started_at, ended_at, error, retry_at FROM job_attempts
         WHERE job_id = ? ORDER BY ended_at, rowid`,
      )
      .all(jobId) as Row[];
    return rows.map((r) => {
      const { jobId: _, ...attempt } = toAttempt(r);
      return attempt;
    });
  }

  /**
   * Puts a failed, partial or cancelled job back in the queue with fresh attempts; only its failed (or
   * never-run) items run again. Returns null when the job is not in a retryable state, or "conflict"
   * when another job with its dedupe key is already queued. `onRetry` runs in the same transaction once the
   * job is queued again, with the job as it was; if it throws, nothing changes.
   */
  retry(id: string, now: number, onRetry?: (before: Job) => void): Job | null | "conflict" {
    return this.tx(() =>
      this.#counted((moved) => {
        const before = this.get(id);
        if (!before || !RETRYABLE_STATUSES.has(before.status)) return null;
        const res = this.db
          .query(
            `UPDATE OR IGNORE jobs SET status = 'queued', attempts = 0, run_at = ?, error = NULL, result = NULL,
             finished_at = NULL, progress = 0, progress_message = NULL, stalled_count = 0, updated_at = ?
           WHERE id = ?`,
          )
          .run(now, now, id);
        // A newer job with the same dedupe key is queued: the unique index refused this one.
        if (res.changes === 0) return "conflict";
        moved.push({ type: before.type, ownerId: before.ownerId, from: before.status, to: "queued" });
        // Only once the job is really queued again: a refused retry must not be charged.
        onRetry?.(before);
        // The run being retried becomes history: its attempt, how it ended and why.
        const ended = before.error ?? {
          code: before.status,
          message: `ended ${before.status}`,
          retryable: true,
          refundable: false,
        };
        this.#attempt.run(
          id,
          before.attempts,
          "rerun",
          before.startedAt,
          before.finishedAt ?? now,
          JSON.stringify(ended),
          now,
        );
        this.db
          .query(
            "UPDATE job_items SET status = 'pending', attempts = 0, error = NULL, updated_at = ? WHERE job_id = ? AND status IN ('failed', 'cancelled')",
          )
          .run(now, id);
        return this.get(id);
      }),
    );
  }

  /**
   * Re-queues active jobs whose lease expired (or that `isDead` says belong to a dead worker), counting a
   * stall and giving back the attempt; past `stalledMax` stalls a job fails with code `stalled` (the rules:
   * stalled.ts). The caller runs the ended jobs' terminal hooks.
   */
  recoverStalled(
    now: number,
    stalledMax: number,
    opts: { expiredOnly: boolean; isDead?: (lockedBy: string) => boolean },
  ): { requeued: Job[]; failed: Job[] } {
    const requeued: Job[] = [];
    const failed: Job[] = [];
    this.tx(() =>
      this.#counted((moved) => {
        const rows = this.db
          .query(
            `SELECT ${JOB_COLUMNS} FROM jobs WHERE status = 'active'${opts.expiredOnly ? " AND locked_until < ?" : ""}`,
          )
          .all(...(opts.expiredOnly ? [now] : [])) as Row[];
        for (const row of rows) {
          const job = toJob(row);
          if (!isStalled(job, now, (holder) => opts.isDead?.(holder) === true)) continue;
          const tooMany = tooManyStalls(job, stalledMax);
          if (tooMany) {
            this.db
              .query(
                `UPDATE jobs SET status = 'failed', error = ?, stalled_count = stalled_count + 1, finished_at = ?,
                 updated_at = ?, locked_by = NULL, locked_until = NULL WHERE id = ? AND status = 'active'`,
              )
              .run(JSON.stringify(tooMany), now, now, job.id);
            failed.push(endedStalled(job, "failed", tooMany, now, moved));
            continue;
          }
          const res = this.db
            .query(
              `UPDATE OR IGNORE jobs SET status = 'queued', run_at = ?, attempts = max(0, attempts - 1),
               stalled_count = stalled_count + 1, locked_by = NULL, locked_until = NULL, updated_at = ?
             WHERE id = ? AND status = 'active'`,
            )
            .run(now, now, job.id);
          if (res.changes === 0) {
            const err = supersededError();
            this.#supersede.run(JSON.stringify(err), now, now, job.id);
            failed.push(endedStalled(job, "cancelled", err, now, moved));
            continue;
          }
          this.#attempt.run(...leaseLostAttempt(job, now));
          requeuedStalled(job, now);
          requeued.push(job);
        }
      }),
    );
    return { requeued, failed };
  }

  /** Gives jobs back to the queue at once without spending an attempt (graceful shutdown). */
  release(workerId: string, ids: string[], now: number): number {
    let n = 0;
    this.tx(() => {
      const stmt = this.db.query(
        `UPDATE OR IGNORE jobs SET status = 'queued', run_at = ?, attempts = max(0, attempts - 1), locked_by = NULL,
           locked_until = NULL, updated_at = ? WHERE id = ? AND locked_by = ? AND status = 'active'`,
      );
      for (const id of ids) n += stmt.run(now, now, id, workerId).changes;
    });
    return n;
  }

  /** Earliest run_at of a queued job, or null: lets an idle pool sleep exactly until the next delayed job. */
  nextRunAt(): number | null {
    const row = this.db.query("SELECT min(run_at) AS t FROM jobs WHERE status = 'queued'").get() as {
      t: number | null;
    };
    return row.t;
  }

  /**
   * One retention slice, found inside the caller's transaction: up to `limit` jobs of one type that ended in
   * `status` before `before`, oldest first, skipping those marked `metadata.keep`, starting at `from` (the
   * cursor the previous slice returned; null starts at the first type). Walks jobs_ended_idx by (status, type,
   * finished_at), so a slice costs its own rows, never the history behind or ahead of it. `delete` deletes
   * them once the caller has taken what goes with them; `next` is null when no type of `status` is left.
   *
   * `delete` does what the foreign keys on jobs (schema.ts) would, one statement per child table over the
   * whole id set, then the jobs by rowid: the queue runs retention slices with foreign keys off (their
   * per-row trigger program is ~4 of a deleted job's ~26 us at 1M rows; docs/BENCHMARKS.md, history round 3).
   * With them on, the cascades find nothing left to do.
   */
  deleteFinishedSlice(
    status: TerminalStatus,
    before: number,
    from: RetentionCursor | null,
    limit: number,
  ): RetentionSlice {
    const type = from ? from.type : this.#nextEndedType(status, null);
    if (type === null) return { ids: [], next: null, delete: () => {} };
    const at = from ?? { finishedAt: -1, id: "" };
    const rows = this.#retentionScan.all(status, type, before, at.finishedAt, at.id, limit) as {
      r: number;
      id: string;
      finished_at: number;
      keep: number;
      type: string;
      owner_id: string | null;
    }[];
    const doomed = rows.filter((r) => !r.keep);
    const ids = doomed.map((r) => r.id);
    const last = rows.at(-1);
    let next: RetentionCursor | null;
    if (rows.length === limit && last) next = { type, finishedAt: last.finished_at, id: last.id };
    else {
      // This type has nothing more past `before`: the next slice starts on the next type ended in `status`.
      const nextType = this.#nextEndedType(status, type);
      next = nextType === null ? null : { type: nextType, finishedAt: -1, id: "" };
    }
    const run = (moved: CountMove[]) => {
      const idSet = JSON.stringify(ids);
      for (const child of this.#deleteChildren) child.run(idSet);
      this.#deleteByRowids.run(JSON.stringify(doomed.map((r) => r.r)));
      for (const r of doomed) moved.push({ type: r.type, ownerId: r.owner_id, from: status, to: null });
    };
    return {
      ids,
      next,
      // Counted as a few grouped upserts; the delete trigger (a safety net for other deletes) stands aside.
      delete: (moved) => {
        if (ids.length === 0) return;
        if (!moved) return this.#counted(run, true);
        // The trigger would count these rows a second time unless it stands aside.
        if (!this.#countingDeletes) throw new Error("delete(moved) needs countingDeletes");
        run(moved);
      },
    };
  }

  /**
   * Runs `fn`, which deletes retention slices with `slice.delete(moved)`, then applies all their count
   * moves as one set of grouped upserts (inside the caller's transaction), with the delete trigger standing
   * aside throughout: a transaction of several slices (the retention thread's) then writes each owner's
   * count row once, not once per slice.
   */
  countingDeletes<T>(fn: (moved: CountMove[]) => T): T {
    this.#countingDeletes = true;
    try {
      return this.#counted(fn, true);
    } finally {
      this.#countingDeletes = false;
    }
  }

  /** What `moves` change in `job_counts` and `job_throughput` (see `countDeltas`). */
  #countDeltas(moves: CountMove[]): { counts: Map<string, number>; ended: Map<string, number> } {
    const owners = ownersOf(moves);
    const parents = new Map(
      owners.length === 0
        ? []
        : (this.#parents.all(JSON.stringify(owners)) as { id: string; parent_id: string }[]).map((u) => [
            u.id,
            u.parent_id,
          ]),
    );
    return countDeltas(moves, parents);
  }

  /**
   * Rebuilds `job_counts` from a full scan of `jobs` (one transaction). Only for rows written behind the
   * store's back, e.g. seeding a database with ended jobs in bulk SQL: the store's own paths keep the counts.
   */
  recountEnded(): void {
    this.tx(() => {
      this.db.run("DELETE FROM job_counts");
      this.db.run(
        `INSERT INTO job_counts (scope, type, status, n)
         SELECT '', type, status, count(*) FROM jobs WHERE status IN ${ENDED_SQL} GROUP BY type, status
         UNION ALL SELECT 'u:' || owner_id, type, status, count(*) FROM jobs
           WHERE owner_id IS NOT NULL AND status IN ${ENDED_SQL} GROUP BY owner_id, type, status
         UNION ALL SELECT 'c:' || u.parent_id, j.type, j.status, count(*) FROM jobs j JOIN users u ON u.id = j.owner_id
           WHERE u.parent_id IS NOT NULL AND j.status IN ${ENDED_SQL} GROUP BY u.parent_id, j.type, j.status`,
      );
    });
  }

  /** Whether any job ended in `status` before `before` (one probe of jobs_ended_idx per type). */
  endedBefore(status: TerminalStatus, before: number): boolean {
    for (
      let type = this.#nextEndedType(status, null);
      type !== null;
      type = this.#nextEndedType(status, type)
    ) {
      if (this.#endedBefore.get(status, type, before) != null) return true;
    }
    return false;
  }

  /** The first type (after `after`, or the first of all) with a job ended in `status`; null when none. */
  #nextEndedType(status: TerminalStatus, after: string | null): string | null {
    const row = (
      after === null ? this.#firstEndedType.get(status) : this.#endedTypeAfter.get(status, after)
    ) as {
      type: string;
    } | null;
    return row?.type ?? null;
  }

  /**
   * Counts by status and type in `scope` (every job when null): ended jobs from the store-kept
   * `job_counts` rows (terminal statuses only), live ones (queued split into waiting and delayed at `now`,
   * active) counted from their partial indexes: bounded by the live queue, never by history.
   */
  stats(now: number, scope: CountScope = null): QueueStats {
    const keys = scopeKeys(scope);
    const k3 = keys[0]!;
    const k4 = keys[1] ?? k3;
    const counted = (
      scope === null
        ? this.#countsAll.all(now, null, k3, k4)
        : scope.withEndUsers
          ? this.#countsApp.all(now, scope.ownerId, k3, k4)
          : this.#countsOwner.all(now, scope.ownerId, k3, k4)
    ) as { type: string; s: string; n: number; later: number }[];
    const rows: { type: string; s: string; n: number }[] = [];
    for (const r of counted) {
      if (r.s !== "queued") rows.push(r);
      else {
        if (r.n - r.later > 0) rows.push({ type: r.type, s: "waiting", n: r.n - r.later });
        if (r.later > 0) rows.push({ type: r.type, s: "delayed", n: r.later });
      }
    }
    return countsFrom(rows);
  }

  /**
   * Jobs that ended per minute in `scope`, for minutes in [fromMinute, toMinute), from the store-kept
   * rollup: rows of (minute, type, status, n), one index range per scope key.
   */
  throughput(
    scope: CountScope,
    fromMinute: number,
    toMinute: number,
  ): { minute: number; type: string; status: TerminalStatus; n: number }[] {
    const keys = scopeKeys(scope);
    return this.#throughput.all(keys[0]!, keys[1] ?? keys[0]!, fromMinute, toMinute) as {
      minute: number;
      type: string;
      status: TerminalStatus;
      n: number;
    }[];
  }

  /** One slice of rollup trimming: deletes up to `limit` rows of minutes before `beforeMinute`. */
  trimThroughput(beforeMinute: number, limit: number): number {
    return this.tx(() => this.#trimThroughput.run(beforeMinute, limit).changes);
  }

  /** Queued jobs that carry a dedupe key (debounced work waiting for its window), for the debug view. */
  debounced(limit = 100): { dedupeKey: string; jobId: string; type: string; runAt: number }[] {
    return this.db
      .query(
        `SELECT dedupe_key AS dedupeKey, id AS jobId, type, run_at AS runAt FROM jobs
         WHERE status = 'queued' AND dedupe_key IS NOT NULL ORDER BY run_at LIMIT ?`,
      )
      .all(limit) as { dedupeKey: string; jobId: string; type: string; runAt: number }[];
  }
}

/**
 * The claim for `typeCount` types. The subquery walks jobs_claim_idx in its own order (CLAIM_ORDER, run_at,
 * id) and stops after LIMIT matches, so a claim reads only the jobs ahead of what it takes, never the whole
 * queue; EXPLAIN QUERY PLAN shows no sort (test/queue/fairness.test.ts checks it).
 */
export function claimSql(typeCount: number): string {
  return `UPDATE jobs SET status = 'active', locked_by = ?, locked_until = ?, attempts = attempts + 1,
       started_at = ?, updated_at = ?
     WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_claim_idx
                  WHERE status = 'queued' AND run_at <= ? AND type IN (${placeholders(typeCount)})
                  ORDER BY ${CLAIM_ORDER}, run_at, id LIMIT ?)
     RETURNING ${JOB_COLUMNS}`;
}

/** The owners `moves` name (their parents scope the counts too). */
export function ownersOf(moves: CountMove[]): string[] {
  return [...new Set(moves.map((m) => m.ownerId).filter((o): o is string => o !== null))];
}

/**
 * What `moves` change in each `job_counts` row (keyed `scope\0type\0status`) and each `job_throughput`
 * row (keyed `scope\0minute\0type\0status`; a run that ends counts there once, a later delete does not
 * take it back), given each owner's parent (`parents`: owner id to parent id, for owners that have one).
 */
export function countDeltas(
  moves: CountMove[],
  parents: Map<string, string>,
): { counts: Map<string, number>; ended: Map<string, number> } {
  const counts = new Map<string, number>();
  const ended = new Map<string, number>();
  const scopesOf = (m: CountMove) => {
    const scopes = [""];
    if (m.ownerId !== null) scopes.push(`u:${m.ownerId}`);
    const parent = m.ownerId === null ? undefined : parents.get(m.ownerId);
    if (parent) scopes.push(`c:${parent}`);
    return scopes;
  };
  const bump = (map: Map<string, number>, key: string, n: number) => map.set(key, (map.get(key) ?? 0) + n);
  for (const m of moves) {
    // job_counts keeps ended jobs only; live ones are counted from their indexes.
    const from = m.from !== null && isTerminal(m.from) ? m.from : null;
    const to = m.to !== null && isTerminal(m.to) ? m.to : null;
    if (from === to) continue;
    for (const scope of scopesOf(m)) {
      if (from) bump(counts, `${scope}\u0000${m.type}\u0000${from}`, -1);
      if (to) bump(counts, `${scope}\u0000${m.type}\u0000${to}`, 1);
      if (to && !from && m.from !== null && m.endedAt !== undefined) {
        bump(ended, `${scope}\u0000${Math.floor(m.endedAt / 60_000)}\u0000${m.type}\u0000${to}`, 1);
      }
    }
  }
  return { counts, ended };
}

/** A job's place in the claim order (CLAIM_ORDER computed in JS). */
export const claimRank = (j: Job): number => j.runAt - j.priority * PRIORITY_STEP_MS;

/** Folds (type, status, n) rows into `{waiting, delayed, active, …, byType}`. */
export function countsFrom(rows: { type: string; s: string; n: number }[]): QueueStats {
  const stats: QueueStats = {
    waiting: 0,
    delayed: 0,
    active: 0,
    completed: 0,
    partial: 0,
    failed: 0,
    cancelled: 0,
    byType: {},
  };
  const totals = stats as unknown as Record<string, number>;
  for (const r of rows) {
    totals[r.s] = (totals[r.s] ?? 0) + r.n;
    stats.byType[r.type] = { ...stats.byType[r.type], [r.s]: r.n };
  }
  return stats;
}

export function supersededError(): JobError {
  return {
    code: "superseded",
    message: "a newer job with the same dedupe key is queued",
    retryable: false,
    refundable: true,
  };
}

/** The row as inserted, built without reading it back (the bulk path must not pay a SELECT per job). */
const asInserted = rowAsInserted(jobs);

export function syntheticJob(j: NewJob): Job {
  // Only the table's columns are copied from `j` (not `now`); what the INSERT sets itself is set here.
  const job = asInserted(j);
  job.status = "queued";
  job.createdAt = j.now;
  job.updatedAt = j.now;
  return job;
}
