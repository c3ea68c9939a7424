import type { Job, JobError, JobItem } from "../db/schema";
import { isWriteFault } from "../db/write-health";
import type { MaybePromise, QueueBackend, SettleResult } from "./backend";
import { backoffDelay, MAX_RETRY_AFTER_MS } from "./backoff";
import type { AnyJobDefinition, JobContext, JobLogger } from "./define";
import {
  CancelledError,
  JobFailure,
  RetryAfterError,
  TimeoutError,
  toJobError,
  UnrecoverableError,
} from "./errors";
import { type EventBus, TERMINAL_EVENT } from "./events";
import type { Settlement } from "./store";

export type PoolOptions = {
  workerId: string;
  /** Attempts running at once in this process. */
  concurrency: number;
  /** How often an idle pool looks for jobs inserted by other processes. */
  pollIntervalMs: number;
  /** Lease length; a running job's lease is renewed every leaseMs/4. */
  leaseMs: number;
  stalledMax: number;
  defaultTimeoutMs: number;
  now: () => number;
  log: JobLogger;
  /**
   * Records a group of finished attempts with their terminal hooks (the queue's one path, terminal.ts):
   * synchronous when no hook applies, else a promise.
   */
  settle: (workerId: string, batch: Settlement[], now: number) => MaybePromise<SettleResult>;
};

/** Aborts an attempt on graceful shutdown: the job is released, not failed, and keeps its attempt. */
class ShutdownSignal extends JobFailure {
  override name = "ShutdownSignal";
  constructor() {
    super("worker shutting down", { code: "shutdown" });
  }
}

type Running = { job: Job; def: AnyJobDefinition; ac: AbortController; startedAt: number };

const ITEM_BACKOFF = { delayMs: 500, maxDelayMs: 30_000 };
/** A job whose writes hit a full disk waits this long before it runs again (without spending an attempt). */
const WRITE_FAULT_RETRY_MS = 5000;
const MAX_FLUSH_RETRY_MS = 5000;

/**
 * The in-process side of the engine: claims due jobs in batches into free slots, runs their handlers
 * under per-attempt timeouts, heartbeats their leases, and group-commits their outcomes.
 */
export class WorkerPool {
  readonly #backend: QueueBackend;
  readonly #events: EventBus;
  readonly #defs: Map<string, AnyJobDefinition>;
  readonly #o: PoolOptions;
  readonly #active = new Map<string, Running>();
  readonly #byType = new Map<string, number>();
  #typeList: string[] = [];
  #pending: Settlement[] = [];
  /** Delay before the next try at recording outcomes the database refused; 0 while it accepts them. */
  #flushRetryMs = 0;
  #flushNotBefore = 0;
  /** An async group commit (one with terminal hooks) in flight: the next waits for it, keeping their order. */
  #flushing: Promise<void> | null = null;
  #beatDeferred = false;
  #started = false;
  #stopping = false;
  #tickScheduled = false;
  /** A claim answered asynchronously (PostgreSQL) in flight: one at a time; `stop` waits for it. */
  #claiming: Promise<void> | null = null;
  /** A wake-up came while a claim was in flight: claim again when it lands instead of waiting for the poll. */
  #wokenWhileClaiming = false;
  /** Claims refused in a row (a busy or unreachable database), so the spell is logged once. */
  #claimFailures = 0;
  #pollPending = false;
  #pollTimer: ReturnType<typeof setTimeout> | null = null;
  #heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  #idle: (() => void) | null = null;

  constructor(
    backend: QueueBackend,
    events: EventBus,
    defs: Map<string, AnyJobDefinition>,
    opts: PoolOptions,
  ) {
    this.#backend = backend;
    this.#events = events;
    this.#defs = defs;
    this.#o = opts;
  }

  get workerId(): string {
    return this.#o.workerId;
  }

  get running(): boolean {
    return this.#started && !this.#stopping;
  }

  get freeSlots(): number {
    return this.#o.concurrency - this.#active.size;
  }

  /** Active attempts of this process, for the debug view. */
  snapshot(): { id: string; type: string; startedAt: number; progress: number }[] {
    return [...this.#active.values()].map((r) => ({
      id: r.job.id,
      type: r.job.type,
      startedAt: r.startedAt,
      progress: r.job.progress,
    }));
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    const beat = Math.max(50, Math.floor(this.#o.leaseMs / 4));
    this.#heartbeatTimer = setInterval(() => this.#heartbeat(), beat);
    this.wake();
  }

  /** Called on enqueue in this process: wakes idle slots at once instead of waiting for the poll. */
  wake(): void {
    if (!this.running) return;
    this.#scheduleTick();
  }

  /** Aborts a local attempt (the row was already cancelled by the caller). */
  abort(jobId: string, reason: Error = new CancelledError()): boolean {
    const r = this.#active.get(jobId);
    if (!r) return false;
    r.ac.abort(reason);
    return true;
  }

  /**
   * Stops claiming, lets active attempts finish within `graceMs`, then aborts the rest and releases
   * their leases so the next start (or another process) re-queues them at once.
   */
  async stop(graceMs: number): Promise<void> {
    if (!this.#started || this.#stopping) return;
    this.#stopping = true;
    if (this.#pollTimer) clearTimeout(this.#pollTimer);
    // Jobs a claim in flight takes are started, then stopped with the others below.
    await this.#claiming;
    if (this.#active.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.#idle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#idle = null;
    }
    const left = [...this.#active.values()];
    for (const r of left) r.ac.abort(new ShutdownSignal());
    await this.#flushing;
    // Checked again after every wait: the group commit below must not join a caller's open transaction.
    while (this.#backend.busy) await this.#backend.idle();
    await this.#backend.outside(() => this.#flush(true));
    if (left.length > 0) {
      const ids = left.map((r) => r.job.id);
      const n = await this.#backend.outside(() =>
        this.#backend.release(this.#o.workerId, ids, this.#o.now()),
      );
      this.#o.log.warn({ released: n }, "released unfinished jobs at shutdown");
    }
    if (this.#heartbeatTimer) clearInterval(this.#heartbeatTimer);
  }

  #scheduleTick(): void {
    if (this.#tickScheduled) return;
    this.#tickScheduled = true;
    // Outside any caller's transaction store: the tick (and every job it starts) is the engine's own work.
    setImmediate(() => this.#backend.outside(() => this.#tick()));
  }

  #tick(): void {
    // A caller's transaction holds the connection (suspended at an await): claiming or settling now would
    // join it. Carry on the moment it ends.
    if (this.#backend.busy) {
      void this.#backend.idle().then(() => this.#backend.outside(() => this.#tick()));
      return;
    }
    this.#tickScheduled = false;
    void this.#flush();
    this.#pump();
  }

  #pump(): void {
    if (!this.running) return;
    if (this.#claiming) {
      this.#wokenWhileClaiming = true;
      return;
    }
    if (this.#pollTimer) {
      clearTimeout(this.#pollTimer);
      this.#pollTimer = null;
    }
    let free = this.freeSlots;
    while (free > 0) {
      let claimed: MaybePromise<Job[]>;
      try {
        claimed = this.#claim(free);
      } catch (err) {
        this.#claimFailed(err);
        break;
      }
      if (claimed instanceof Promise) {
        this.#claimLater(claimed, free);
        return;
      }
      this.#claimed();
      for (const job of claimed) this.#start(job);
      if (claimed.length < free) break;
      free = this.freeSlots;
    }
    if (this.freeSlots > 0) this.#schedulePoll();
  }

  /** Starts what an asynchronous claim took; claims again at once when it filled every slot or was woken. */
  #claimLater(claimed: Promise<Job[]>, asked: number): void {
    this.#wokenWhileClaiming = false;
    this.#claiming = claimed.then(
      (jobs) => {
        this.#claiming = null;
        this.#claimed();
        for (const job of jobs) this.#start(job);
        if (jobs.length >= asked || this.#wokenWhileClaiming) this.#scheduleTick();
        else if (this.freeSlots > 0) this.#schedulePoll();
      },
      (err) => {
        this.#claiming = null;
        this.#claimFailed(err);
        if (this.freeSlots > 0) this.#schedulePoll();
      },
    );
  }

  /**
   * Another process held the write lock past busy_timeout (a backup, a long migration), or the database
   * could not be reached: nothing was claimed, so nothing is lost; look again after the usual poll interval.
   */
  #claimFailed(err: unknown): void {
    // Once per spell, not once per poll: a lock held for a minute would otherwise log every few hundred ms.
    if (this.#claimFailures++ === 0) this.#o.log.warn({ err }, "could not claim jobs; trying again");
  }

  /** A claim went through: says so if claims had been failing. */
  #claimed(): void {
    if (this.#claimFailures === 0) return;
    this.#o.log.info({ failedTries: this.#claimFailures }, "claiming jobs again");
    this.#claimFailures = 0;
  }

  /**
   * Claims up to `free` jobs in the store's aged order across every type with room, honouring each type's
   * own concurrency cap. When a capped type could overflow, the claim goes in rounds of at most the
   * smallest room left, so the order stays global: a capped type is neither let past its cap nor starved
   * by uncapped types claimed ahead of it.
   */
  #claim(free: number): MaybePromise<Job[]> {
    const now = this.#o.now();
    const { workerId, leaseMs } = this.#o;
    const rooms = this.#rooms();
    let tightest = Infinity;
    let full = false;
    for (const room of rooms.values()) {
      if (room <= 0) full = true;
      else if (room < tightest) tightest = room;
    }
    // The hot path: no capped type is full or could overflow, so one claim over every type.
    if (!full && tightest >= free) return this.#backend.claim(workerId, this.#types(), free, now, leaseMs);
    const eligible = () => this.#types().filter((type) => (rooms.get(type) ?? Infinity) > 0);
    let claimed = 0;
    let asked = 0;
    return this.#backend.claimRounds(workerId, now, leaseMs, (got) => {
      for (const job of got) {
        const room = rooms.get(job.type);
        if (room !== undefined) rooms.set(job.type, room - 1);
      }
      claimed += got.length;
      if (got.length < asked || claimed >= free) return null;
      asked = free - claimed;
      for (const room of rooms.values()) if (room > 0 && room < asked) asked = room;
      const types = eligible();
      return types.length === 0 ? null : { types, limit: asked };
    });
  }

  /** Every defined type, in definition order (one array while the definitions stay the same). */
  #types(): string[] {
    if (this.#typeList.length !== this.#defs.size) this.#typeList = [...this.#defs.keys()];
    return this.#typeList;
  }

  /** Free room of each type that has a concurrency cap. */
  #rooms(): Map<string, number> {
    const rooms = new Map<string, number>();
    for (const [type, def] of this.#defs) {
      if (def.concurrency !== undefined) rooms.set(type, def.concurrency - (this.#byType.get(type) ?? 0));
    }
    return rooms;
  }

  #schedulePoll(): void {
    if (this.#pollTimer || this.#pollPending || !this.running) return;
    let next: MaybePromise<number | null>;
    try {
      next = this.#backend.nextRunAt();
    } catch {
      next = null;
    }
    if (!(next instanceof Promise)) {
      this.#pollAfter(next);
      return;
    }
    this.#pollPending = true;
    next.then(
      (at) => {
        this.#pollPending = false;
        if (!this.#pollTimer && this.running && !this.#claiming) this.#pollAfter(at);
      },
      () => {
        this.#pollPending = false;
        if (!this.#pollTimer && this.running && !this.#claiming) this.#pollAfter(null);
      },
    );
  }

  /** Sleeps until the next delayed job is due, or the poll interval, whichever comes first. */
  #pollAfter(next: number | null): void {
    const now = this.#o.now();
    const delay =
      next !== null && next > now ? Math.min(next - now, this.#o.pollIntervalMs) : this.#o.pollIntervalMs;
    this.#pollTimer = setTimeout(() => {
      this.#pollTimer = null;
      this.#scheduleTick();
    }, delay);
  }

  #start(job: Job): void {
    const def = this.#defs.get(job.type)!;
    const r: Running = { job, def, ac: new AbortController(), startedAt: this.#o.now() };
    this.#active.set(job.id, r);
    this.#byType.set(job.type, (this.#byType.get(job.type) ?? 0) + 1);
    this.#events.emit("job:active", { job });
    void this.#execute(r);
  }

  async #execute(r: Running): Promise<void> {
    const { job, def, ac } = r;
    const timeoutMs = job.timeoutMs ?? def.timeoutMs ?? this.#o.defaultTimeoutMs;
    const timer = setTimeout(() => ac.abort(new TimeoutError(timeoutMs)), timeoutMs);
    let settlement: Settlement | null;
    try {
      const ctx = this.#context(r);
      if (def.items) {
        settlement = await this.#runBatch(r, ctx);
      } else {
        const result = await raceAbort(def.run!(ctx), ac.signal);
        settlement = { kind: "finish", job, status: "completed", result: result ?? null, error: null };
      }
    } catch (err) {
      settlement = this.#failure(r, ac.signal.aborted ? ac.signal.reason : err);
    } finally {
      clearTimeout(timer);
    }
    this.#active.delete(job.id);
    this.#byType.set(job.type, (this.#byType.get(job.type) ?? 1) - 1);
    if (settlement && !(ac.signal.reason instanceof ShutdownSignal)) this.#pending.push(settlement);
    if (this.#active.size === 0) this.#idle?.();
    this.#scheduleTick();
  }

  #context(r: Running): JobContext<unknown> {
    const { job, def, ac } = r;
    const parsed = def.input.safeParse(job.input);
    if (!parsed.success) {
      throw new UnrecoverableError(`invalid input for ${job.type}: ${parsed.error.message}`, {
        code: "invalid_input",
      });
    }
    const log = this.#o.log;
    return {
      job,
      input: parsed.data,
      signal: ac.signal,
      progress: (pct, message) => this.#progress(r, pct, message ?? null),
      log: {
        info: (o, m) => log.info({ jobId: job.id, ...o }, m),
        warn: (o, m) => log.warn({ jobId: job.id, ...o }, m),
        error: (o, m) => log.error({ jobId: job.id, ...o }, m),
        debug: (o, m) => log.debug({ jobId: job.id, ...o }, m),
      },
    };
  }

  #progress(
    r: Running,
    pct: number,
    message: string | null,
    items?: { done: number; failed: number; total: number },
  ): void {
    if (r.ac.signal.aborted) return;
    const progress = Math.max(0, Math.min(100, Math.round(pct)));
    r.job.progress = progress;
    r.job.progressMessage = message;
    const written = this.#backend.progress(r.job.id, progress, message, this.#o.now());
    if (written instanceof Promise) {
      written.catch((err) => this.#o.log.warn({ err, jobId: r.job.id }, "could not record progress"));
    }
    this.#events.emit("job:progress", {
      job: r.job,
      progress,
      message,
      ...(items ? { completedItems: items.done, failedItems: items.failed, totalItems: items.total } : {}),
    });
  }

  /** Decides what a failed attempt becomes: nothing (cancel/shutdown), a re-queue, or a failure. */
  #failure(r: Running, reason: unknown): Settlement | null {
    const { job, def } = r;
    if (reason instanceof ShutdownSignal || reason instanceof CancelledError) return null;
    if (isWriteFault(reason)) {
      // The database refused the attempt's writes (disk full): not the job's fault, so it keeps its attempt
      // and waits for space instead of failing or staying active.
      this.#backend.writeFault(reason);
      const message = `the database refused writes: ${(reason as Error).message}`;
      reason = new RetryAfterError(WRITE_FAULT_RETRY_MS, message, { code: "disk_full" });
    }
    const error = toJobError(reason);
    const now = this.#o.now();
    if (reason instanceof RetryAfterError) {
      const runAt = now + Math.min(reason.delayMs, MAX_RETRY_AFTER_MS);
      return { kind: "requeue", job, runAt, error, refundAttempt: true };
    }
    if (error.retryable && job.attempts < job.maxAttempts) {
      const runAt = now + backoffDelay(job.attempts, def.backoff);
      return { kind: "requeue", job, runAt, error, refundAttempt: false };
    }
    return { kind: "finish", job, status: "failed", result: null, error };
  }

  /** Runs the pending items of a batch; finished items are checkpoints and never run again. */
  async #runBatch(r: Running, ctx: JobContext<unknown>): Promise<Settlement> {
    const items = await this.#backend.outside(() => this.#backend.items(r.job.id));
    const total = items.length;
    // completedItems counts successes only (as the job's status and result do); failures are said apart.
    let ok = items.filter((i) => i.status === "completed").length;
    let failed = items.filter((i) => i.status === "failed").length;
    const pending = items.filter((i) => i.status === "pending");
    const width = Math.max(1, Math.min(r.def.items!.concurrency ?? 4, pending.length));
    let next = 0;
    const lane = async () => {
      while (next < pending.length) {
        const item = pending[next++]!;
        if ((await this.#runItem(r, ctx, item)) === "completed") ok++;
        else failed++;
        const done = ok + failed;
        const message = `${done}/${total} items${failed ? ` (${failed} failed)` : ""}`;
        this.#progress(r, (done / total) * 100, message, { done: ok, failed, total });
      }
    };
    await Promise.all(Array.from({ length: width }, lane));
    return batchOutcome(r.job, await this.#backend.outside(() => this.#backend.items(r.job.id)));
  }

  async #runItem(r: Running, ctx: JobContext<unknown>, item: JobItem): Promise<"completed" | "failed"> {
    const opts = r.def.items!;
    const { job, ac } = r;
    const maxAttempts = opts.maxAttempts ?? 3;
    const timeoutMs = opts.timeoutMs ?? job.timeoutMs ?? r.def.timeoutMs ?? this.#o.defaultTimeoutMs;
    let attempt = item.attempts;
    for (;;) {
      if (ac.signal.aborted) throw ac.signal.reason;
      attempt++;
      await this.#backend.bumpItemAttempt(job.id, item.idx, 1, this.#o.now());
      const itemAc = new AbortController();
      const onJobAbort = () => itemAc.abort(ac.signal.reason);
      ac.signal.addEventListener("abort", onJobAbort, { once: true });
      const timer = setTimeout(() => itemAc.abort(new TimeoutError(timeoutMs)), timeoutMs);
      let delay: number;
      const started = performance.now();
      const ended = (error: unknown) =>
        this.#events.emit("item:attempt", {
          job,
          item,
          seconds: (performance.now() - started) / 1000,
          error,
        });
      try {
        const out = await raceAbort(
          opts.run({ ...ctx, item, itemInput: item.input, itemSignal: itemAc.signal, attempt }),
          itemAc.signal,
        );
        ended(null);
        await this.#backend.checkpointItem(job.id, item.idx, "completed", out ?? {}, this.#o.now());
        return "completed";
      } catch (err) {
        if (ac.signal.aborted) throw ac.signal.reason;
        const reason = itemAc.signal.aborted ? itemAc.signal.reason : err;
        ended(reason);
        // A full disk fails every item alike: stop the whole attempt (its lanes too) and re-queue the job.
        if (isWriteFault(reason)) {
          ac.abort(reason);
          throw reason;
        }
        const error = toJobError(reason);
        if (reason instanceof RetryAfterError) {
          await this.#backend.bumpItemAttempt(job.id, item.idx, -1, this.#o.now());
          attempt--;
          delay = Math.min(reason.delayMs, MAX_RETRY_AFTER_MS);
        } else if (error.retryable && attempt < maxAttempts) {
          delay = backoffDelay(attempt, opts.backoff ?? ITEM_BACKOFF);
        } else {
          await this.#backend.checkpointItem(job.id, item.idx, "failed", { error }, this.#o.now());
          return "failed";
        }
      } finally {
        clearTimeout(timer);
        ac.signal.removeEventListener("abort", onJobAbort);
      }
      await sleep(delay, ac.signal);
    }
  }

  /**
   * Records finished attempts; `force` (shutdown) tries even while backing off from a refusal. A group with
   * terminal hooks commits asynchronously; the next group waits for it.
   */
  #flush(force = false): Promise<void> | undefined {
    if (this.#pending.length === 0 || this.#flushing) return this.#flushing ?? undefined;
    if (!force && performance.now() < this.#flushNotBefore) return;
    const batch = this.#pending;
    this.#pending = [];
    let out: SettleResult | Promise<SettleResult>;
    try {
      out = this.#o.settle(this.#o.workerId, batch, this.#o.now());
    } catch (err) {
      this.#refused(batch, err);
      return;
    }
    if (!(out instanceof Promise)) {
      this.#settled(batch, out);
      return;
    }
    this.#flushing = out.then(
      (result) => this.#settled(batch, result),
      (err) => this.#refused(batch, err),
    );
    this.#flushing = this.#flushing.finally(() => {
      this.#flushing = null;
      if (this.#pending.length > 0) this.#scheduleTick();
    });
    return this.#flushing;
  }

  /**
   * The database refused the whole group (busy past busy_timeout, disk full): keep it and try again,
   * backing off while it keeps refusing. The jobs stay active (leased) until their outcome is written.
   */
  #refused(batch: Settlement[], err: unknown): void {
    if (isWriteFault(err)) this.#backend.writeFault(err);
    if (this.#flushRetryMs === 0)
      this.#o.log.error({ err, n: batch.length }, "could not record job outcomes; retrying");
    this.#flushRetryMs = Math.min(MAX_FLUSH_RETRY_MS, Math.max(100, this.#flushRetryMs * 2));
    this.#flushNotBefore = performance.now() + this.#flushRetryMs;
    this.#pending.push(...batch);
    setTimeout(() => this.#scheduleTick(), this.#flushRetryMs);
  }

  #settled(batch: Settlement[], out: SettleResult): void {
    if (this.#flushRetryMs > 0) this.#o.log.info({ n: batch.length }, "recorded job outcomes again");
    this.#flushRetryMs = 0;
    for (const s of out.applied) {
      const job = s.job;
      if (s.kind === "requeue") {
        this.#events.emit("job:retrying", { job, error: s.error! });
      } else if (s.status === "failed") {
        this.#events.emit("job:failed", { job, error: s.error! });
      } else {
        this.#events.emit(TERMINAL_EVENT[s.status] as "job:completed", { job, result: s.result });
      }
    }
    for (const job of out.superseded) this.#events.emit("job:cancelled", { job });
  }

  /** Renews leases; aborts local attempts whose row is no longer ours (cancelled elsewhere or swept). */
  #heartbeat(): void {
    if (this.#active.size === 0) return;
    if (this.#backend.busy || this.#beatDeferred) {
      // Beat once the open transaction ends (leases outlast several beats; one late beat loses nothing).
      if (this.#beatDeferred) return;
      this.#beatDeferred = true;
      void this.#backend.idle().then(() => {
        this.#beatDeferred = false;
        this.#backend.outside(() => this.#heartbeat());
      });
      return;
    }
    const ids = [...this.#active.keys()];
    let held: MaybePromise<Set<string>>;
    try {
      held = this.#backend.heartbeat(this.#o.workerId, ids, this.#o.now() + this.#o.leaseMs);
    } catch (err) {
      this.#o.log.warn({ err }, "heartbeat failed");
      return;
    }
    if (!(held instanceof Promise)) {
      this.#abortLost(ids, held);
      return;
    }
    // One beat at a time: a slow answer must not pile beats up behind it.
    this.#beatDeferred = true;
    held
      .then(
        (still) => this.#abortLost(ids, still),
        (err) => this.#o.log.warn({ err }, "heartbeat failed"),
      )
      .finally(() => {
        this.#beatDeferred = false;
      });
  }

  /** Aborts the attempts among `ids` whose lease the last heartbeat no longer found held by this worker. */
  #abortLost(ids: string[], held: Set<string>): void {
    for (const id of ids) {
      const r = this.#active.get(id);
      if (r && !held.has(id) && !r.ac.signal.aborted)
        r.ac.abort(new CancelledError("job is no longer held by this worker"));
    }
  }
}

/** The end state of a batch from its items: all done → completed, some → partial, none → failed. */
export function batchOutcome(job: Job, items: JobItem[]): Settlement {
  const failed = items.filter((i) => i.status === "failed");
  const completed = items.length - failed.length;
  const errors: Record<string, { code: string; message: string }> = {};
  for (const i of failed)
    errors[i.key] = { code: i.error?.code ?? "failed", message: i.error?.message ?? "" };
  const result = {
    totalItems: items.length,
    completedItems: completed,
    failedItems: failed.length,
    failedIds: failed.map((i) => i.key),
    errors,
  };
  if (failed.length === 0) return { kind: "finish", job, status: "completed", result, error: null };
  if (completed > 0) return { kind: "finish", job, status: "partial", result, error: null };
  // One shared cause (always so for a batch of one) is the job's error as is; mixed causes get a summary.
  const first = failed[0]?.error;
  const sameCause = first && failed.every((i) => i.error?.code === first.code);
  const error: JobError = sameCause
    ? {
        ...first,
        retryable: false,
        message: items.length === 1 ? first.message : `all ${items.length} items failed: ${first.message}`,
      }
    : {
        code: "all_items_failed",
        message: `all ${items.length} items failed (first: ${first?.message ?? "unknown"})`,
        retryable: false,
        refundable: failed.some((i) => i.error?.refundable !== false),
      };
  return { kind: "finish", job, status: "failed", result, error };
}

/** Resolves with the promise, or rejects with the signal's reason the moment it aborts. */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
