import type { Database } from "bun:sqlite";
import { hostname } from "node:os";
import { INSTANCE_TTL_MS, InstanceRegistry, joinInstances } from "../db/pg/instances";
import type { Job, TerminalStatus } from "../db/schema";
import { type SqliteClient, sqliteClient } from "../db/sqlite";
import { writeHealth } from "../db/write-health";
import type {
  BackendRetentionSlice,
  InsertResult,
  ItemOutcome,
  MaybePromise,
  QueueBackend,
  SettleResult,
  StalledPolicy,
} from "./backend";
import type { JobLogger } from "./define";
import { QueueDepth, SQLITE_DEPTH } from "./depth";
import { FeatureStore } from "./feature-store";
import { type JobFilter, JobLists, type JobPage } from "./list";
import { RetentionThread } from "./retention-thread";
import {
  type CountScope,
  type NewItem,
  type NewJob,
  QueueStore,
  type RetentionCursor,
  type Settlement,
} from "./store";

export type SqliteQueueBackendOptions = {
  /** List the started pool in `instances` (the server does; a bare queue in a test or tool need not). */
  instances?: { version: string; heartbeatMs?: number };
};

/** The queue's backend on one bun:sqlite connection (the same client every repository of it shares). */
export function sqliteQueueBackend(db: Database, opts: SqliteQueueBackendOptions = {}): SqliteQueueBackend {
  return new SqliteQueueBackend(db, opts);
}

/**
 * The engine's operations on SQLite: the synchronous, batched `QueueStore` behind the connection's client.
 * Every section runs through the client's gate (`exclusive`), so it never runs inside another caller's
 * transaction suspended at an await; inside the caller's own transaction it joins it. The pool's hot path
 * (claim, settle, heartbeat, progress, nextRunAt) answers synchronously when no transaction is open: the
 * pool checks `busy` before each tick, so a claim or a group commit costs no turn of the event loop.
 */
export class SqliteQueueBackend implements QueueBackend {
  readonly kind = "sqlite" as const;
  readonly db: Database;
  readonly sql: SqliteClient;
  readonly store: QueueStore;
  readonly features: FeatureStore;
  readonly depth: QueueDepth;
  readonly #lists: JobLists;
  readonly #instances: SqliteQueueBackendOptions["instances"];

  constructor(db: Database, opts: SqliteQueueBackendOptions = {}) {
    this.db = db;
    this.#instances = opts.instances;
    this.sql = sqliteClient(db);
    this.store = new QueueStore(db);
    this.features = new FeatureStore(this.sql);
    this.depth = new QueueDepth(this.sql, SQLITE_DEPTH);
    this.#lists = new JobLists(db, (now, scope) => this.store.stats(now, scope));
  }

  get busy(): boolean {
    return this.sql.busy;
  }

  idle(): Promise<void> {
    return this.sql.idle();
  }

  outside<T>(fn: () => T): T {
    return this.sql.outside(fn);
  }

  /** One process per file writes what it enqueues; other processes find it by polling. */
  async onWake(): Promise<null> {
    return null;
  }

  /**
   * Lists this process in `instances` (one per file: a dead holder's jobs are found by its pid at start-up,
   * `recoverStalled(true)`), and drops the rows of earlier processes that died without leaving.
   */
  async register(workerId: string, jobsRunning: () => number, log: JobLogger): Promise<() => Promise<void>> {
    const opts = this.#instances;
    if (!opts) return async () => {};
    const registry = new InstanceRegistry(this.sql);
    const leave = await joinInstances(
      registry,
      { id: workerId, host: hostname(), version: opts.version },
      { jobsRunning, heartbeatMs: opts.heartbeatMs, log },
    );
    await registry.reap(Date.now(), INSTANCE_TTL_MS);
    return leave;
  }

  insert(job: NewJob, items?: NewItem[], inputKeys?: readonly string[]): Promise<InsertResult> {
    return this.sql.exclusive(() => this.store.tx(() => this.store.insert(job, items, inputKeys)));
  }

  insertBulk(jobs: NewJob[]): Promise<Job[]> {
    return this.sql.exclusive(() => this.store.tx(() => jobs.map((j) => this.store.insert(j).job)));
  }

  claim(
    workerId: string,
    types: readonly string[],
    limit: number,
    now: number,
    leaseMs: number,
  ): MaybePromise<Job[]> {
    return this.#now(() => this.store.claim(workerId, types, limit, now, leaseMs));
  }

  claimRounds(
    workerId: string,
    now: number,
    leaseMs: number,
    next: (got: Job[]) => { types: readonly string[]; limit: number } | null,
  ): MaybePromise<Job[]> {
    // One transaction, so a refused round (a busy database) leaves none of them half-taken.
    return this.#now(() =>
      this.store.tx(() => {
        const claimed: Job[] = [];
        for (let round = next([]); round; ) {
          const got = this.store.claim(workerId, round.types, round.limit, now, leaseMs);
          claimed.push(...got);
          round = next(got);
        }
        return claimed;
      }),
    );
  }

  settle(workerId: string, batch: Settlement[], now: number): MaybePromise<SettleResult> {
    return this.#now(() => {
      const ended: Job[] = [];
      const out = this.store.settle(workerId, batch, now, (j) => ended.push(j));
      return { ...out, ended };
    });
  }

  heartbeat(workerId: string, ids: string[], lockedUntil: number): MaybePromise<Set<string>> {
    return this.#now(() => this.store.heartbeat(workerId, ids, lockedUntil));
  }

  progress(id: string, pct: number, message: string | null, now: number): MaybePromise<void> {
    // Not worth blocking the handler for: written once an open transaction ends (a no-op if the job ended).
    return this.#free(() => this.store.progress(id, pct, message, now));
  }

  nextRunAt(): MaybePromise<number | null> {
    return this.#now(() => this.store.nextRunAt());
  }

  async release(workerId: string, ids: string[], now: number): Promise<number> {
    return this.#free(() => this.store.release(workerId, ids, now));
  }

  async bumpItemAttempt(jobId: string, idx: number, delta: number, now: number): Promise<void> {
    await this.#free(() => this.store.bumpItemAttempt(jobId, idx, delta, now));
  }

  async checkpointItem(
    jobId: string,
    idx: number,
    status: "completed" | "failed",
    out: ItemOutcome,
    now: number,
  ): Promise<boolean> {
    return this.#free(() => this.store.checkpointItem(jobId, idx, status, out, now));
  }

  writeFault(err: unknown): void {
    writeHealth(this.db).failed(err);
  }

  get(id: string) {
    return this.sql.exclusive(() => this.store.get(id));
  }

  items(jobId: string) {
    return this.sql.exclusive(() => this.store.items(jobId));
  }

  attempts(jobId: string) {
    return this.sql.exclusive(() => this.store.attempts(jobId));
  }

  cancel(id: string, now: number): Promise<Job | null> {
    return this.sql.exclusive(() => this.store.cancel(id, now));
  }

  retry(id: string, now: number): Promise<{ job: Job; before: Job } | null | "conflict"> {
    return this.sql.exclusive(() => {
      let before: Job | null = null;
      const job = this.store.retry(id, now, (j) => {
        before = j;
      });
      if (job === null || job === "conflict") return job;
      return { job, before: before! };
    });
  }

  recoverStalled(now: number, stalledMax: number, policy: StalledPolicy) {
    return this.sql.exclusive(() => this.store.recoverStalled(now, stalledMax, policy));
  }

  startRetentionThread(): Promise<RetentionThread | null> {
    return RetentionThread.start(this.db);
  }

  retentionTransaction<T>(fn: () => Promise<T>): Promise<T> {
    // The slice deletes the jobs' children itself (QueueStore#deleteFinishedSlice), so their per-row
    // foreign-key actions are switched off for its transaction.
    return this.sql.transaction(fn, { foreignKeys: false });
  }

  retentionSlice(
    status: TerminalStatus,
    before: number,
    from: RetentionCursor | null,
    limit: number,
  ): Promise<BackendRetentionSlice> {
    return this.sql.exclusive(() => {
      const found = this.store.deleteFinishedSlice(status, before, from, limit);
      return { ids: found.ids, next: found.next, delete: () => this.sql.exclusive(found.delete) };
    });
  }

  endedBefore(status: TerminalStatus, before: number): Promise<boolean> {
    return this.sql.exclusive(() => this.store.endedBefore(status, before));
  }

  trimThroughput(beforeMinute: number, limit: number): Promise<number> {
    return this.sql.exclusive(() => this.store.trimThroughput(beforeMinute, limit));
  }

  stats(now: number, scope: CountScope) {
    return this.sql.exclusive(() => this.store.stats(now, scope));
  }

  throughput(scope: CountScope, fromMinute: number, toMinute: number) {
    return this.sql.exclusive(() => this.store.throughput(scope, fromMinute, toMinute));
  }

  debounced(limit?: number) {
    return this.sql.exclusive(() => this.store.debounced(limit));
  }

  referencedInputKeys(keys: readonly string[]): Promise<Set<string>> {
    return this.sql.exclusive(() => this.store.referencedInputKeys(keys));
  }

  list(filter: JobFilter, page: JobPage, now: number) {
    return this.sql.exclusive(() => this.#lists.list(filter, page, now));
  }

  itemCounts(jobId: string) {
    return this.sql.exclusive(() => this.#lists.itemCounts(jobId));
  }

  itemSummaries(jobIds: string[]) {
    return this.sql.exclusive(() => this.#lists.itemSummaries(jobIds));
  }

  /**
   * The hot path: synchronously when no caller's transaction holds the connection (or the caller is inside
   * it); else once it has ended. Errors of a synchronous run are thrown, for the pool to catch.
   */
  #now<T>(fn: () => T): MaybePromise<T> {
    if (!this.sql.busy || this.sql.inside) return fn();
    return this.sql.exclusive(fn);
  }

  /** Engine work, never inside a caller's transaction whatever context called it. */
  #free<T>(fn: () => T): MaybePromise<T> {
    if (!this.sql.busy) return fn();
    return this.sql.outside(() => this.sql.exclusive(fn));
  }
}
