import type { Job, JobAttempt, JobError, JobItem, TerminalStatus } from "../db/schema";
import type { Sql } from "../db/sql";
import type { JobLogger } from "./define";
import type { ItemSummary, JobFilter, JobListPage, JobPage } from "./list";
import type { RetentionThread } from "./retention-thread";
import type { CountScope, NewItem, NewJob, QueueStats, RetentionCursor, Settlement } from "./store";

/**
 * The seam between the engine (`Queue`, `WorkerPool`) and the tables it keeps: every operation the engine
 * performs on `jobs`, `job_items`, `job_attempts`, `job_input_keys`, `job_counts` and `job_throughput`. Two
 * implementations: SQLite (`sqliteQueueBackend`, sqlite-backend.ts: the synchronous batched store behind the
 * connection's gate) and PostgreSQL (`pgQueueBackend`, pg/backend.ts). The engine's contract tests run
 * against both.
 *
 * Operations marked `MaybePromise` are the worker pool's hot path: SQLite answers them synchronously (a
 * claim or a group commit costs no turn of the event loop), PostgreSQL with a promise; the pool handles
 * both. Every other operation is async, and joins the caller's open transaction of `sql` when there is one.
 */
export type MaybePromise<T> = T | Promise<T>;

export type InsertResult = {
  job: Job;
  deduped: boolean;
  /** When deduped: what the replaced request had been charged (0 when new). */
  previousCharge: number;
};

/**
 * What a group commit did: the settlements that took effect (their `job` updated in place), the jobs
 * superseded instead of re-queued (a newer job holds their dedupe key), and every job that ended, in order
 * (the ones terminal hooks run for).
 */
export type SettleResult = { applied: Settlement[]; superseded: Job[]; ended: Job[] };

/** Which active jobs the stalled sweep takes: lapsed leases, and (at start-up) those of dead local holders. */
export type StalledPolicy = { expiredOnly: boolean; isDead?: (lockedBy: string) => boolean };

/** One retention slice found in the caller's transaction (see `QueueBackend.retentionSlice`). */
export type BackendRetentionSlice = {
  ids: string[];
  next: RetentionCursor | null;
  /** Deletes the slice's jobs and what belongs to them, counted, in the same transaction. */
  delete: () => Promise<void>;
};

export type ItemOutcome = { result?: unknown; assetId?: string | null; error?: JobError | null };

/** What features ask of the queue's tables (credits, backlog levels, the instant transfer): see feature-store.ts. */
export interface QueueFeatures {
  /** A job's charge and what was refunded of it; null for an unknown job. */
  credits(jobId: string): Promise<{ charged: number; refunded: number } | null>;
  /** Adds `amount` to the job's refunded total unless that would pass its charge; false when refused. */
  addRefund(jobId: string, amount: number): Promise<boolean>;
  /** Takes `amount` back off the refunded total (a retry re-charged it); false when less was refunded. */
  takeBackRefund(jobId: string, amount: number): Promise<boolean>;
  /** The job's items in order (read inside the caller's transaction when one is open). */
  items(jobId: string): Promise<JobItem[]>;
  /** Completed jobs of a recipe held by `ownerId` (a backlog), and when the oldest finished. */
  ready(recipeId: string, ownerId: string): Promise<{ n: number; oldest: number | null }>;
  /** The same count, stopping at `limit`. */
  readyUpTo(recipeId: string, ownerId: string, limit: number): Promise<number>;
  /** Queued or active jobs of a recipe held by `ownerId`. */
  inFlight(recipeId: string, ownerId: string): Promise<number>;
  /** Queued or active jobs of any of `recipeIds` held by `ownerId`. */
  inFlightForRecipes(recipeIds: string[], ownerId: string): Promise<number>;
  /** Whether `ownerId` holds a completed job of the recipe. */
  hasCompleted(recipeId: string, ownerId: string): Promise<boolean>;
  /**
   * Moves the oldest completed job of `recipeId` held by `from` to `to`, charged `price`, with its ended-job
   * count moving between their scopes, in the caller's transaction. Null when there was none left.
   */
  transferOldestCompleted(
    recipeId: string,
    from: string,
    to: string,
    price: number,
    now: number,
  ): Promise<Job | null>;
  /**
   * `transferOldestCompleted` for a group of claims at once: claim i gets the i-th oldest ready job of its
   * recipe among the group's claims of that recipe, or null when there were too few left. One statement on
   * PostgreSQL; the same takes one by one on SQLite.
   */
  transferOldestCompletedMany(
    from: string,
    claims: readonly { recipeId: string; to: string; price: number }[],
    now: number,
  ): Promise<(Job | null)[]>;
  /** The first item's key and prompt, and how many items the job has. */
  firstItem(jobId: string): Promise<{ key: string; prompt: string | null; count: number } | null>;
}

/** How deep the queue is, for back-pressure and the status views (see depth.ts). */
export interface QueueDepthReader {
  /** Queued jobs of `type` owned by `ownerId`, counted up to `cap`. */
  ownerQueued(ownerId: string, type: string, cap: number): Promise<number>;
  /** Queued jobs of every type and owner (delayed ones too), counted up to `cap`. */
  queued(cap?: number): Promise<number>;
  /** The owners with the most queued jobs of `type`, most first. */
  busiestOwners(type: string, limit: number): Promise<{ ownerId: string; queued: number }[]>;
  /** Per type with a due job waiting: when its longest-waiting one became due (epoch ms). */
  oldestDueByType(now: number): Promise<Map<string, number>>;
}

export interface QueueBackend {
  readonly kind: "sqlite" | "postgres";
  /** The connection's client: transactions, savepoints and after-commit work that features share. */
  readonly sql: Sql;
  readonly features: QueueFeatures;
  readonly depth: QueueDepthReader;

  /**
   * Whether a caller's transaction holds the engine's connection now (SQLite's one-writer gate): the pool
   * waits for `idle` instead of joining it. Always false on PostgreSQL, where transactions run side by side.
   */
  readonly busy: boolean;
  idle(): Promise<void>;
  /** Runs `fn` outside any caller's transaction context: engine work never joins a request's transaction. */
  outside<T>(fn: () => T): T;
  /**
   * Calls `fn` whenever a job was enqueued by another process sharing the database (PostgreSQL NOTIFY);
   * resolves to an unsubscribe. Null when the backend has no such channel (the pool polls).
   */
  onWake(fn: () => void): Promise<(() => Promise<void>) | null>;
  /**
   * Records the worker pool `workerId` as a live instance sharing the database, heartbeating it (with how
   * many jobs it runs) until the returned stop: the stalled sweep of any instance re-queues the jobs of an
   * instance whose heartbeat lapsed, without waiting for their leases. A no-op on SQLite (one process).
   */
  register(workerId: string, jobsRunning: () => number, log: JobLogger): Promise<() => Promise<void>>;

  /** Inserts one job (with its items and input keys), or upserts into its dedupe key's queued job. */
  insert(job: NewJob, items?: NewItem[], inputKeys?: readonly string[]): Promise<InsertResult>;
  /**
   * Inserts jobs without dedupe in one transaction; resolves to the rows as inserted, in order. The jobs
   * differ only in `id` and `input` (`Queue.enqueueBulk` builds them from one set of options).
   */
  insertBulk(jobs: NewJob[]): Promise<Job[]>;

  /** Claims up to `limit` due queued jobs of `types` for `workerId`, in claim order. */
  claim(
    workerId: string,
    types: readonly string[],
    limit: number,
    now: number,
    leaseMs: number,
  ): MaybePromise<Job[]>;
  /**
   * Claims in rounds in one transaction: `next` says what the next round asks for (given the jobs the last
   * one got; none at first), null to stop. For per-type caps, which a single claim cannot honour.
   */
  claimRounds(
    workerId: string,
    now: number,
    leaseMs: number,
    next: (got: Job[]) => { types: readonly string[]; limit: number } | null,
  ): MaybePromise<Job[]>;
  /** Applies a group of finished attempts in one transaction, each guarded by its lease. */
  settle(workerId: string, batch: Settlement[], now: number): MaybePromise<SettleResult>;
  /** Extends the leases of `ids` held by `workerId`; returns those it still holds. */
  heartbeat(workerId: string, ids: string[], lockedUntil: number): MaybePromise<Set<string>>;
  /** Records progress of an active job; a no-op once the job is no longer active. */
  progress(id: string, pct: number, message: string | null, now: number): MaybePromise<void>;
  /** Earliest run_at of a queued job, or null. */
  nextRunAt(): MaybePromise<number | null>;
  /** Gives jobs back to the queue at once without spending an attempt (graceful shutdown). */
  release(workerId: string, ids: string[], now: number): Promise<number>;
  /** Counts an item attempt (`delta` 1) before it runs, or gives one back (-1). */
  bumpItemAttempt(jobId: string, idx: number, delta: number, now: number): Promise<void>;
  /** Checkpoints a finished item; only a pending item changes. */
  checkpointItem(
    jobId: string,
    idx: number,
    status: "completed" | "failed",
    out: ItemOutcome,
    now: number,
  ): Promise<boolean>;
  /** Records that a write failed for lack of disk (SQLite's readiness); a no-op where it cannot happen. */
  writeFault(err: unknown): void;

  get(id: string): Promise<Job | null>;
  items(jobId: string): Promise<JobItem[]>;
  attempts(jobId: string): Promise<Omit<JobAttempt, "jobId">[]>;
  /** Cancels a queued or active job; the row after the change, or null when it was not cancellable. */
  cancel(id: string, now: number): Promise<Job | null>;
  /** Re-queues a failed/partial/cancelled job (see QueueStore.retry); `before` is the job as it was. */
  retry(id: string, now: number): Promise<{ job: Job; before: Job } | null | "conflict">;
  /** Re-queues (or, past `stalledMax`, fails) active jobs whose lease lapsed; `failed` holds every job it ended. */
  recoverStalled(
    now: number,
    stalledMax: number,
    policy: StalledPolicy,
  ): Promise<{ requeued: Job[]; failed: Job[] }>;

  /**
   * Rows per retention slice, for a backend whose slices do not hold the event loop (Queue#cleanupRetention).
   * Left out, slices are sized to take `sliceMs` each (SQLite's hold the loop).
   */
  readonly retentionSliceRows?: number;
  /**
   * A worker thread that deletes retention slices on a connection of its own while the event loop stays free
   * (SQLite on a file, see retention-thread.ts); null when it cannot start. Left out where the database
   * server does the work anyway (PostgreSQL).
   */
  startRetentionThread?(): Promise<RetentionThread | null>;
  /** A transaction for retention slices (SQLite runs it with foreign keys off: the slice deletes children itself). */
  retentionTransaction<T>(fn: () => Promise<T>): Promise<T>;
  /** Up to `limit` jobs of one type that ended in `status` before `before`, not kept, from `from` on. */
  retentionSlice(
    status: TerminalStatus,
    before: number,
    from: RetentionCursor | null,
    limit: number,
  ): Promise<BackendRetentionSlice>;
  /** Whether any job ended in `status` before `before`. */
  endedBefore(status: TerminalStatus, before: number): Promise<boolean>;
  /** Deletes up to `limit` throughput rows of minutes before `beforeMinute`; how many it deleted. */
  trimThroughput(beforeMinute: number, limit: number): Promise<number>;

  stats(now: number, scope: CountScope): Promise<QueueStats>;
  throughput(
    scope: CountScope,
    fromMinute: number,
    toMinute: number,
  ): Promise<{ minute: number; type: string; status: TerminalStatus; n: number }[]>;
  debounced(limit?: number): Promise<{ dedupeKey: string; jobId: string; type: string; runAt: number }[]>;
  referencedInputKeys(keys: readonly string[]): Promise<Set<string>>;
  list(filter: JobFilter, page: JobPage, now: number): Promise<JobListPage>;
  itemCounts(jobId: string): Promise<{ completed: number; total: number } | null>;
  itemSummaries(jobIds: string[]): Promise<Map<string, ItemSummary>>;
}
