import type { Database } from "bun:sqlite";
import { hostname } from "node:os";
import type { Job, JobItem, TerminalStatus } from "../db/schema";
import type { Sql } from "../db/sql";
import type { MaybePromise, QueueBackend, QueueDepthReader, QueueFeatures, SettleResult } from "./backend";
import type { AnyJobDefinition, JobLogger, TerminalHook } from "./define";
import { EventBus } from "./events";
import type { ItemSummary, JobFilter, JobListPage, JobPage } from "./list";
import { WorkerPool } from "./pool";
import { sqliteQueueBackend } from "./sqlite-backend";
import {
  type CountScope,
  type NewItem,
  type NewJob,
  type QueueStats,
  type RetentionCursor,
  type Settlement,
  supersededError,
} from "./store";
import { hooksApply, runTerminalHooks } from "./terminal";

export type { QueueBackend, QueueDepthReader, QueueFeatures } from "./backend";
export {
  type AnyJobDefinition,
  defineJob,
  type ItemContext,
  type JobContext,
  type JobDefinition,
  type TerminalHook,
} from "./define";
export * from "./errors";
export type { QueueEvents } from "./events";
export { EventBus } from "./events";
export type { ItemSummary, JobFilter, JobListPage, JobPage, ListStatus } from "./list";
export { type PgQueueBackendOptions, pgQueueBackend } from "./pg/backend";
export { sqliteQueueBackend } from "./sqlite-backend";
export type { CountScope, QueueStats } from "./store";

export type RetentionOptions = {
  completedHours: number;
  /** For failed, partial and cancelled jobs. */
  failedHours: number;
  /** Runs in each slice's transaction with the ids it is about to delete (database work only). */
  beforeDelete?: (ids: string[]) => Promise<void> | void;
  /** Runs after each slice has committed (awaited before the next slice); `onThread`: see `offThread`. */
  afterSlice?: (ids: string[], onThread: boolean) => Promise<void> | void;
  /**
   * How long one slice's transaction should take; a backend with fixed slices (QueueBackend.retentionSliceRows,
   * PostgreSQL's) ignores it. @defaultValue 5
   */
  sliceMs?: number;
  /**
   * Awaited after every `RETENTION_CHECKPOINT_ROWS` deleted jobs with no slice running, so a WAL checkpoint
   * can complete and the log restart: deletes dirty pages all over the indexes, and back-to-back slices
   * would otherwise grow the WAL for as long as retention runs.
   */
  checkpoint?: () => Promise<void>;
  signal?: AbortSignal;
  /**
   * SQLite on a file: delete the slices on a worker thread's own connection (`RetentionThread`), the event
   * loop free meanwhile; the main connection stands aside during each slice, which grows up to `capMs` while
   * nothing waits for that connection and ends after its current chunk (`sliceMs`) once something does.
   * There `companionSql` stands in for `beforeDelete`: one statement given the slice's ids as a JSON array
   * (`?1`) that deletes what goes with the jobs and returns its storage keys (every string column), handed
   * to `taken` once the slice has committed. If the thread cannot start or dies, the run
   * goes on in process with `beforeDelete`. Ignored on PostgreSQL.
   */
  offThread?: { companionSql?: string; taken?: (keys: string[]) => void; capMs?: number };
};

export type EnqueueOptions = {
  /** Higher runs first. @defaultValue 0 */
  priority?: number;
  /** Absolute start time (epoch ms). */
  runAt?: number;
  delayMs?: number;
  /** @defaultValue the definition's maxAttempts, else JOB_MAX_ATTEMPTS */
  maxAttempts?: number;
  timeoutMs?: number;
  /** At most one queued job per key; a repeat enqueue replaces its input (DESIGN §3). */
  dedupeKey?: string;
  /** With dedupeKey: a new job waits this long, collecting replacements (trailing edge, latest input). */
  debounceMs?: number;
  ownerId?: string | null;
  recipeId?: string | null;
  creditsCharged?: number;
  webhookUrl?: string | null;
  metadata?: Record<string, unknown> | null;
  /** Makes this a batch job: one row per item, each run and checkpointed on its own. */
  items?: NewItem[];
  /**
   * Storage keys the input names (an uploaded image): `referencedInputKeys` reports them while the job
   * exists, so the orphan sweep keeps them. A deduped enqueue replaces the queued job's keys.
   */
  inputKeys?: readonly string[];
};

export type EnqueueResult = {
  id: string;
  deduped: boolean;
  job: Job;
  /** When deduped: the credits the replaced request had been charged (the replacement's price is in `job`). */
  previousCharge: number;
};

export type QueueOptions = {
  /** Where the queue keeps its tables: `sqliteQueueBackend(db)` or `pgQueueBackend(sql, …)`. */
  backend?: QueueBackend;
  /** Shorthand for `backend: sqliteQueueBackend(db)`. */
  db?: Database;
  concurrency: number;
  pollIntervalMs: number;
  leaseMs: number;
  stalledMax: number;
  defaultTimeoutMs: number;
  defaultMaxAttempts: number;
  log: JobLogger;
  now?: () => number;
  workerId?: string;
  /**
   * Run inside each job's terminal-state transaction (refunds, usage counters), in order, after the
   * definition's own hook, each in a savepoint: when one throws, the error is logged and the job still ends
   * (see terminal.ts).
   */
  onTerminal?: TerminalHook[];
  /**
   * Runs inside a retry's transaction, with the job as it was before (charges for the re-run). Throwing
   * refuses the retry: the transaction rolls back and the job stays as it was.
   */
  onRetry?: (job: Job) => Promise<void> | void;
};

/** A worker id that says which host and process holds a lease, so a restart can tell dead holders. */
export function makeWorkerId(): string {
  return `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
}

/** True when `lockedBy` names a process on this host that no longer runs (or a previous life of this pid). */
export function isDeadLocalWorker(lockedBy: string, selfId: string): boolean {
  const [host, pidText] = lockedBy.split(":");
  if (host !== hostname() || lockedBy === selfId) return false;
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}

/**
 * The durable job engine: definitions, enqueue, control (cancel/retry), maintenance (stalled sweep,
 * retention) and the worker pool. Knows nothing of HTTP.
 *
 * Its API is async, like every repository's; its tables live behind a `QueueBackend` (backend.ts): SQLite,
 * where claims and completions stay synchronous and batched behind the connection's gate, or PostgreSQL,
 * where several instances share one database.
 */
export class Queue {
  /** Where the queue's tables live (SQLite or PostgreSQL). */
  readonly backend: QueueBackend;
  /** What features ask of the queue's tables: credit columns, backlog levels, the instant transfer. */
  readonly features: QueueFeatures;
  readonly events: EventBus;
  readonly defs = new Map<string, AnyJobDefinition>();
  readonly #pool: WorkerPool;
  /** Queued-job counts for back-pressure and status views. */
  readonly depth: QueueDepthReader;
  readonly now: () => number;
  /** The database client: the transactions every feature sharing the queue's database joins. */
  readonly sql: Sql;
  readonly #o: QueueOptions;
  readonly #hooks: readonly TerminalHook[];
  #unsubscribeWake: Promise<(() => Promise<void>) | null> | null = null;
  #deregister: Promise<() => Promise<void>> | null = null;

  constructor(opts: QueueOptions) {
    this.#o = opts;
    this.#hooks = opts.onTerminal ?? [];
    this.now = opts.now ?? Date.now;
    if (!opts.backend && !opts.db) throw new TypeError("Queue needs a backend (or a SQLite db)");
    this.backend = opts.backend ?? sqliteQueueBackend(opts.db!);
    this.sql = this.backend.sql;
    this.features = this.backend.features;
    this.depth = this.backend.depth;
    this.events = new EventBus((err, event) => opts.log.error({ err, event }, "event listener failed"));
    this.#pool = new WorkerPool(this.backend, this.events, this.defs, {
      workerId: opts.workerId ?? makeWorkerId(),
      concurrency: opts.concurrency,
      pollIntervalMs: opts.pollIntervalMs,
      leaseMs: opts.leaseMs,
      stalledMax: opts.stalledMax,
      defaultTimeoutMs: opts.defaultTimeoutMs,
      now: this.now,
      log: opts.log,
      settle: (workerId, batch, now) => this.#settle(workerId, batch, now),
    });
  }

  define(...defs: AnyJobDefinition[]): this {
    for (const def of defs) this.defs.set(def.type, def);
    return this;
  }

  /**
   * Inserts a job (in the caller's transaction when one is open) and resolves once it is committed — or,
   * inside a caller's transaction, once that transaction is the only thing left to commit. Workers are woken
   * and `job:queued` emitted only after the commit (a rolled-back insert emits nothing).
   */
  async enqueue(type: string, input: unknown, opts: EnqueueOptions = {}): Promise<EnqueueResult> {
    const def = this.#def(type);
    const parsed = def.input.safeParse(input);
    if (!parsed.success) throw new InvalidJobInputError(type, parsed.error.message);
    const row = this.#newJob(def, opts, this.now());
    const { job, deduped, previousCharge } = await this.backend.insert(
      { ...row, input: parsed.data },
      opts.items,
      opts.inputKeys,
    );
    this.#afterCommit(() => this.events.emit("job:queued", { job, deduped }));
    return { id: job.id, deduped, job, previousCharge };
  }

  /** Inserts many jobs of one type in one transaction (no dedupe). Resolves to their ids in order. */
  async enqueueBulk(
    type: string,
    inputs: unknown[],
    opts: Omit<EnqueueOptions, "dedupeKey" | "items" | "inputKeys"> = {},
  ): Promise<string[]> {
    const def = this.#def(type);
    const rows = inputs.map((input, i) => {
      const parsed = def.input.safeParse(input);
      if (!parsed.success) throw new InvalidJobInputError(type, `item ${i}: ${parsed.error.message}`);
      return parsed.data;
    });
    const row = this.#newJob(def, opts, this.now());
    const jobs = await this.backend.insertBulk(
      rows.map((input) => ({ ...row, id: Bun.randomUUIDv7(), input })),
    );
    this.#afterCommit(() => {
      if (this.events.listenerCount("job:queued") === 0) return;
      for (const job of jobs) this.events.emit("job:queued", { job, deduped: false });
    });
    return jobs.map((j) => j.id);
  }

  /** The row a job gets from its options and its definition's defaults (input filled in by the caller). */
  #newJob(def: AnyJobDefinition, opts: EnqueueOptions, now: number): NewJob {
    const debounce = opts.dedupeKey && opts.debounceMs ? opts.debounceMs : 0;
    return {
      id: Bun.randomUUIDv7(),
      type: def.type,
      input: null,
      priority: opts.priority ?? 0,
      maxAttempts: opts.maxAttempts ?? def.maxAttempts ?? this.#o.defaultMaxAttempts,
      runAt: opts.runAt ?? now + (opts.delayMs ?? debounce),
      timeoutMs: opts.timeoutMs ?? null,
      dedupeKey: opts.dedupeKey ?? null,
      ownerId: opts.ownerId ?? null,
      recipeId: opts.recipeId ?? null,
      creditsCharged: opts.creditsCharged ?? 0,
      webhookUrl: opts.webhookUrl ?? null,
      metadata: opts.metadata ?? null,
      now,
    };
  }

  get(id: string): Promise<Job | null> {
    return this.backend.get(id);
  }

  items(id: string): Promise<JobItem[]> {
    return this.backend.items(id);
  }

  /** A page of the jobs matching `filter`, newest first; never reads history (the plans: src/queue/list.ts). */
  list(filter: JobFilter, page: JobPage): Promise<JobListPage> {
    return this.backend.list(filter, page, this.now());
  }

  /** A job's item count and how many completed; null for a job without items. */
  itemCounts(id: string): Promise<{ completed: number; total: number } | null> {
    return this.backend.itemCounts(id);
  }

  /** Each job's first item and item count, for list rows (jobs without items are absent). */
  itemSummaries(ids: string[]): Promise<Map<string, ItemSummary>> {
    return this.backend.itemSummaries(ids);
  }

  /** Which of `keys` a job still names as input (`EnqueueOptions.inputKeys`), for the orphan sweep. */
  referencedInputKeys(keys: readonly string[]): Promise<Set<string>> {
    return this.backend.referencedInputKeys(keys);
  }

  /**
   * Cancels a queued job at once, or an active one by aborting its attempt. Null if already finished.
   * `within` runs in the cancel's transaction with the cancelled job (e.g. to record the caller's answer).
   */
  async cancel(id: string, within?: (job: Job) => Promise<void> | void): Promise<Job | null> {
    const job = await this.sql.transaction(async () => {
      const cancelled = await this.backend.cancel(id, this.now());
      if (cancelled) {
        await this.#terminal(cancelled);
        await within?.(cancelled);
      }
      return cancelled;
    });
    if (!job) return null;
    this.#pool.abort(id);
    this.events.emit("job:cancelled", { job });
    return job;
  }

  /**
   * Re-queues a failed/partial/cancelled job with fresh attempts; only its failed items run again. The
   * `onRetry` option (charges) and then `within` run in the same transaction; either may throw to refuse.
   */
  async retry(id: string, within?: (job: Job) => Promise<void> | void): Promise<Job | null | "conflict"> {
    const job = await this.sql.transaction(async () => {
      const retried = await this.backend.retry(id, this.now());
      if (retried === null || retried === "conflict") return retried;
      // Only once the job is really queued again: a refused retry must not be charged.
      await this.#o.onRetry?.(retried.before);
      await within?.(retried.job);
      return retried.job;
    });
    if (job && job !== "conflict") {
      this.events.emit("job:queued", { job, deduped: false });
      this.#pool.wake();
    }
    return job;
  }

  /**
   * Re-queues jobs whose lease expired, and (with `atStartup`) at once those held by dead processes on this
   * host — a crash or kill -9 loses nothing and a restart picks up where the last process stopped.
   */
  async recoverStalled(atStartup = false): Promise<{ requeued: number; failed: number }> {
    const self = this.#pool.workerId;
    const out = await this.sql.transaction(async () => {
      const result = await this.backend.recoverStalled(
        this.now(),
        this.#o.stalledMax,
        atStartup
          ? { expiredOnly: false, isDead: (lockedBy) => isDeadLocalWorker(lockedBy, self) }
          : { expiredOnly: true },
      );
      for (const j of result.failed) await this.#terminal(j);
      return result;
    });
    for (const job of out.failed) {
      if (job.status === "failed") this.events.emit("job:failed", { job, error: job.error! });
      else this.events.emit("job:cancelled", { job });
    }
    if (out.requeued.length > 0) this.#pool.wake();
    return { requeued: out.requeued.length, failed: out.failed.length };
  }

  /**
   * Deletes finished jobs past retention (not those marked `metadata.keep`) in slices: each slice is one
   * short transaction sized to take about `sliceMs`, with `beforeDelete` inside it (e.g. taking the asset
   * rows), then `afterSlice` (e.g. deleting the files) and a turn of the event loop, so requests, sockets and
   * jobs run between slices however much history there is. Runs until nothing is past retention or `signal`
   * aborts; after a restart the next run simply finds what is left. Resolves to how many jobs it deleted.
   */
  async cleanupRetention(opts: RetentionOptions): Promise<number> {
    const cutoffs = this.#retentionCutoffs(opts);
    // A thread only when there is something to delete: most scheduled runs find nothing.
    let thread =
      opts.offThread &&
      this.backend.startRetentionThread &&
      !opts.signal?.aborted &&
      (await this.retentionDue(opts))
        ? await this.backend.startRetentionThread()
        : null;
    try {
      let deleted = 0;
      const checkpoints = new CheckpointPacer(opts.checkpoint);
      for (const [status, before] of cutoffs) {
        // Sized per status and type, from the floor up: a rare status's rows lie one to a table page, so a
        // row costs a few times what a completed one does, and the size the previous walk reached overshot
        // (the first slice of `partial` jobs took 20 ms at 1M rows, against a 5 ms target). Likewise a card
        // render has no items or assets and a generation has both: the size reached on one type says
        // nothing of the next.
        const fixed = this.backend.retentionSliceRows;
        const sizer = () =>
          new SliceSizer(
            opts.sliceMs ?? 5,
            fixed ? { start: fixed, min: fixed, max: fixed } : { start: 50, min: 50, max: 5000 },
          );
        let slicer = sizer();
        let cursor: RetentionCursor | null = null;
        do {
          if (opts.signal?.aborted) return deleted;
          const from: RetentionCursor | null = cursor;
          let slice: { ids: string[]; next: RetentionCursor | null } | null = null;
          let onThread = false;
          const started = performance.now();
          if (thread) {
            const done = await thread.slice({
              status,
              before,
              from,
              chunkMs: opts.sliceMs ?? 5,
              capMs: opts.offThread?.capMs ?? RETENTION_THREAD_CAP_MS,
              companionSql: opts.offThread?.companionSql,
            });
            if (done) {
              slice = done;
              onThread = true;
              if (done.keys.length > 0) opts.offThread?.taken?.(done.keys);
            } else {
              // The thread is gone or its slice failed (rolled back): the rest of the run goes on here.
              await thread.stop();
              thread = null;
            }
          }
          if (!slice) {
            slice = await this.backend.retentionTransaction(async () => {
              const found = await this.backend.retentionSlice(status, before, from, slicer.rows);
              if (found.ids.length > 0) {
                // Before the delete: what goes with the jobs (asset rows) still names them.
                await opts.beforeDelete?.(found.ids);
                await found.delete();
              }
              return found;
            });
          }
          // Sized by all the event loop waited for, COMMIT included: writing the slice's pages to the WAL is
          // about a fifth of a deleted job's cost (docs/BENCHMARKS.md), which the body alone leaves out.
          // (The thread sizes its own chunks.)
          if (!onThread) slicer.observe(performance.now() - started);
          cursor = slice.next;
          if (from && cursor && cursor.type !== from.type) slicer = sizer();
          deleted += slice.ids.length;
          if (slice.ids.length > 0) await opts.afterSlice?.(slice.ids, onThread);
          await checkpoints.after(slice.ids.length);
          await yieldToEventLoop();
        } while (cursor);
      }
      return deleted;
    } finally {
      await thread?.stop();
    }
  }

  /**
   * Runs `fn` as one transaction on the queue's connection (inside the caller's when one is open): a feature's
   * own writes and its enqueue, charge or claim commit together or not at all. `fn` must not await real I/O.
   */
  transaction<T>(fn: () => Promise<T>): Promise<T> {
    return this.sql.transaction(fn);
  }

  /** This process's worker id (host:pid:…), which its leases carry. */
  get workerId(): string {
    return this.#pool.workerId;
  }

  /** Whether this process's worker pool is claiming. */
  get running(): boolean {
    return this.#pool.running;
  }

  /** Worker slots of this process not running a job now. */
  get freeSlots(): number {
    return this.#pool.freeSlots;
  }

  /** The jobs this process runs now, with their progress (the debug view and the dashboard). */
  active() {
    return this.#pool.snapshot();
  }

  /** A job's earlier attempts, oldest first (the latest is the job row itself). */
  attempts(id: string) {
    return this.backend.attempts(id);
  }

  /** Queued jobs waiting out a debounce window (the debug view). */
  debounced(limit?: number) {
    return this.backend.debounced(limit);
  }

  /** Whether any job has ended past retention (kept ones included): a cheap probe before a full run. */
  async retentionDue(opts: Pick<RetentionOptions, "completedHours" | "failedHours">): Promise<boolean> {
    for (const [status, before] of this.#retentionCutoffs(opts)) {
      if (await this.backend.endedBefore(status, before)) return true;
    }
    return false;
  }

  #retentionCutoffs(
    opts: Pick<RetentionOptions, "completedHours" | "failedHours">,
  ): [TerminalStatus, number][] {
    const now = this.now();
    return [
      ["completed", now - opts.completedHours * 3_600_000],
      ["partial", now - opts.failedHours * 3_600_000],
      ["failed", now - opts.failedHours * 3_600_000],
      ["cancelled", now - opts.failedHours * 3_600_000],
    ];
  }

  /** Trims the throughput rollup to `keepHours`, in slices like retention. Resolves to the rows removed. */
  async trimThroughput(keepHours: number, signal?: AbortSignal): Promise<number> {
    const beforeMinute = Math.floor((this.now() - keepHours * 3_600_000) / 60_000);
    let removed = 0;
    for (;;) {
      if (signal?.aborted) return removed;
      const n = await this.backend.trimThroughput(beforeMinute, 2000);
      removed += n;
      if (n < 2000) return removed;
      await yieldToEventLoop();
    }
  }

  /** Counts by status and type, for every job or one scope (see `CountScope`); reads a handful of rows. */
  stats(scope: CountScope = null): Promise<QueueStats> {
    return this.backend.stats(this.now(), scope);
  }

  /** Jobs that ended per minute in [fromMinute, toMinute) in `scope`, from the rollup kept as they end. */
  throughput(scope: CountScope, fromMinute: number, toMinute: number) {
    return this.backend.throughput(scope, fromMinute, toMinute);
  }

  /** Starts the worker pool; jobs enqueued by other instances sharing the database wake it (PostgreSQL). */
  start(): void {
    this.#pool.start();
    this.#unsubscribeWake ??= this.backend
      .onWake(() => this.#pool.wake())
      .catch((err) => {
        this.#o.log.warn({ err }, "cannot listen for jobs from other instances; polling only");
        return null;
      });
    this.#deregister ??= this.backend
      .register(this.workerId, () => this.#o.concurrency - this.#pool.freeSlots, this.#o.log)
      .catch((err) => {
        this.#o.log.warn({ err }, "cannot register this instance; its jobs are recovered by their leases");
        return async () => {};
      });
  }

  async stop(graceMs: number): Promise<void> {
    await this.#pool.stop(graceMs);
    const unsubscribe = await this.#unsubscribeWake;
    this.#unsubscribeWake = null;
    await unsubscribe?.();
    // Left the cluster cleanly: its unfinished jobs were released above, not left for a reaper.
    const deregister = await this.#deregister;
    this.#deregister = null;
    await deregister?.();
  }

  #def(type: string): AnyJobDefinition {
    const def = this.defs.get(type);
    if (!def) throw new UnknownJobTypeError(type);
    return def;
  }

  /**
   * Records a group of finished attempts. When no terminal hook applies to any of them (the hot path), one
   * synchronous transaction; else one async transaction whose hooks are awaited after the state changes.
   */
  #settle(workerId: string, batch: Settlement[], now: number): MaybePromise<SettleResult> {
    if (!batch.some((s) => this.#mayRunHooks(s))) return this.backend.settle(workerId, batch, now);
    return this.sql.transaction(async () => {
      const out = await this.backend.settle(workerId, batch, now);
      for (const j of out.ended) await this.#terminal(j);
      return out;
    });
  }

  /** Whether ending this settlement's job could run a hook (a requeue of a keyed job may be superseded). */
  #mayRunHooks(s: Settlement): boolean {
    const def = this.defs.get(s.job.type)?.onTerminal;
    if (!def && this.#hooks.length === 0) return false;
    const hooks = [def, ...this.#hooks];
    if (s.kind === "finish") {
      return hooksApply(hooks, { ...s.job, status: s.status, result: s.result ?? null, error: s.error });
    }
    return (
      s.job.dedupeKey !== null &&
      hooksApply(hooks, { ...s.job, status: "cancelled", error: supersededError() })
    );
  }

  /** Every path that ends a job (the pool, cancel, the stalled sweep) runs its hooks through here. */
  #terminal(job: Job): Promise<void> {
    return runTerminalHooks(
      this.sql,
      [this.defs.get(job.type)?.onTerminal, ...this.#hooks],
      job,
      this.#o.log,
    );
  }

  /** Runs `fn` now, or — inside a caller's open transaction — once it has committed (never if it rolled back). */
  #afterCommit(fn: () => void): void {
    this.sql.afterCommit(() => {
      fn();
      this.#pool.wake();
    });
  }
}

/** Jobs deleted between two pauses for a WAL checkpoint (see `RetentionOptions.checkpoint`). */
const RETENTION_CHECKPOINT_ROWS = 20_000;

/**
 * The longest a slice on the retention thread may run while nothing waits for the main connection (once
 * something does, it ends after its current chunk of `sliceMs`). The event loop never waits for it, and a
 * larger transaction costs less per deleted job, but a request that needs the database waits for the slice's
 * commit: at 1M rows, 100 ms gave 25–28k rows/s with such requests waiting 18 ms at the median, 20 ms the same
 * rate and 11 ms, 10 ms 23k rows/s and 7 ms (docs/BENCHMARKS.md, "history after the merges").
 */
const RETENTION_THREAD_CAP_MS = 20;

/**
 * Paces retention's pauses for a WAL checkpoint. Back-to-back slices keep the WAL from rewinding, so every
 * RETENTION_CHECKPOINT_ROWS jobs the run must stop once for a checkpoint to finish. Waiting for the whole
 * log to be copied left the connection idle for 100-500 ms a pause: instead a checkpoint is asked for
 * without waiting while slices go on, and once it is done, the next pause waits only for the tail the
 * slices wrote meanwhile.
 */
class CheckpointPacer {
  readonly #checkpoint: (() => Promise<void>) | undefined;
  #since = 0;
  #catchingUp: Promise<void> | null = null;
  #caughtUp = false;

  constructor(checkpoint: (() => Promise<void>) | undefined) {
    this.#checkpoint = checkpoint;
  }

  async after(deleted: number): Promise<void> {
    if (!this.#checkpoint) return;
    this.#since += deleted;
    if (this.#since < RETENTION_CHECKPOINT_ROWS) return;
    if (!this.#catchingUp) {
      this.#catchingUp = this.#checkpoint().finally(() => {
        this.#caughtUp = true;
      });
      return;
    }
    // A second backlog's worth without the first checkpoint done: wait for it rather than grow the WAL.
    if (!this.#caughtUp && this.#since < 2 * RETENTION_CHECKPOINT_ROWS) return;
    await this.#catchingUp;
    await this.#checkpoint();
    this.#since = 0;
    this.#catchingUp = null;
    this.#caughtUp = false;
  }
}

/** Lets timers, sockets and requests that are due run before the next slice of background work. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Sizes slices of background work by how long the last one took, so each stays near `targetMs` whatever
 * the machine's speed or load (rows cost more with assets, items and attempts to cascade).
 */
export class SliceSizer {
  rows: number;
  readonly #targetMs: number;
  readonly #min: number;
  readonly #max: number;

  constructor(
    targetMs: number,
    bounds: { start: number; min: number; max: number } = { start: 200, min: 50, max: 5000 },
  ) {
    this.#targetMs = targetMs;
    this.rows = bounds.start;
    this.#min = bounds.min;
    this.#max = bounds.max;
  }

  observe(ms: number): void {
    const scaled = this.rows * (this.#targetMs / Math.max(ms, 0.1));
    // Grow gently, shrink at once: one slow slice is a stall someone already waited through.
    this.rows = Math.round(Math.min(this.#max, Math.max(this.#min, Math.min(scaled, this.rows * 1.5))));
  }
}

export class UnknownJobTypeError extends Error {
  override name = "UnknownJobTypeError";
  readonly code = "unknown_job_type";
  constructor(type: string) {
    super(`no job type named ${type}`);
  }
}

export class InvalidJobInputError extends Error {
  override name = "InvalidJobInputError";
  readonly code = "invalid_job_input";
  constructor(type: string, message: string) {
    super(`invalid input for job ${type}: ${message}`);
  }
}
