import type { Config } from "../../config";
import type { Checkpointer } from "../../db/checkpointer";
import { type Db, optimize } from "../../db/client";
import { sqliteClient } from "../../db/sqlite";
import { type Queue, SliceSizer, yieldToEventLoop } from "../../queue";
import { LocalStorage, type Storage, sweepOrphans } from "../../storage";
import type { AssetService } from "../generate/service";
import type { IdempotencyService } from "../idempotency/service";
import type { WebhookService } from "../webhooks/service";

/** What this file needs from the services, and nothing more. */
type Deps = {
  assets: AssetService;
  config: Config;
  /** The SQLite handle, null on PostgreSQL (where the file's upkeep has no place). */
  sqlite: Db | null;
  idempotency: IdempotencyService;
  queue: Queue;
  storage: Storage;
  webhooks: WebhookService;
};

export type RetentionReport = {
  jobs: number;
  /** How many of `jobs` were deleted on the retention thread's connection (the rest on the event loop). */
  jobsOffThread: number;
  objects: number;
  idempotencyKeys: number;
  webhookDeliveries: number;
  throughputRows: number;
  /** Pages returned to the file system by incremental vacuum. */
  freedPages: number;
  /** How much of `ms` the incremental vacuum took (after a spike of deletes it is most of the run's tail). */
  vacuumMs: number;
  /** How long the whole run took (slices and the event-loop turns between them). */
  ms: number;
};

/** Storage keys deleted together, a few requests at a time. */
const FILE_BATCH = 500;
const FILE_CONCURRENCY = 8;

/** Deletes `keys` from storage in FILE_CONCURRENCY parallel groups (local disk deletes one file per call). */
async function deleteObjects(storage: Storage, keys: string[]): Promise<void> {
  if (keys.length === 0) return;
  const size = Math.ceil(keys.length / FILE_CONCURRENCY);
  const groups = Array.from({ length: Math.ceil(keys.length / size) }, (_, i) =>
    keys.slice(i * size, (i + 1) * size),
  );
  await Promise.all(groups.map((group) => storage.deleteMany(group)));
}

/** Rows per transaction for the small tables (idempotency keys): a few milliseconds each. */
const SLICE = 2000;
/** Idempotency keys answer repeats for a day. */
const IDEMPOTENCY_KEEP_MS = 24 * 3_600_000;

const running = new WeakMap<Deps, Promise<RetentionReport>>();

/**
 * Retention: deletes finished jobs past their retention with their asset rows (same slice transaction) and
 * then the assets' objects from storage; then old idempotency keys, webhook deliveries and throughput
 * rollup minutes. Every table is trimmed in slices with event-loop turns between them, so however much
 * history is due no request waits for more than one slice. Calls while a run is under way join it.
 */
export function runRetention(ctx: Deps, signal?: AbortSignal, upkeep?: Upkeep): Promise<RetentionReport> {
  const current = running.get(ctx);
  if (current) return current;
  const run = retain(ctx, signal, upkeep).finally(() => running.delete(ctx));
  running.set(ctx, run);
  return run;
}

/**
 * The database worker (db/checkpointer.ts) as retention uses it: WAL checkpoints to pause on, and the
 * incremental vacuum and `PRAGMA optimize` run on its connection, off the event loop. Without it (tests,
 * the CLI) both run on the main connection.
 */
export type Upkeep = Pick<Checkpointer, "checkpointNow" | "vacuum" | "optimize">;

async function retain(ctx: Deps, signal?: AbortSignal, upkeep?: Upkeep): Promise<RetentionReport> {
  const { config, queue, assets, storage } = ctx;
  const started = performance.now();
  let objects = 0;
  let jobsOffThread = 0;
  const pendingKeys: string[] = [];
  // One slice's files are deleted while the next slices run (at most one batch behind, so memory stays
  // bounded). A crash between a slice's commit and its files' deletion leaves orphans for the storage sweep.
  let deleting: Promise<void> = Promise.resolve();
  const jobs = await queue.cleanupRetention({
    completedHours: config.RETAIN_COMPLETED_HOURS,
    failedHours: config.RETAIN_FAILED_HOURS,
    signal,
    checkpoint: upkeep && (() => upkeep.checkpointNow()),
    beforeDelete: async (ids) => {
      pendingKeys.push(...(await assets.takeForJobs(ids)));
    },
    // With the server's database worker, the slices themselves run off the event loop too (the CLI and
    // tests without one delete in process).
    offThread: upkeep
      ? { companionSql: assets.takeForJobsSqlite, taken: (keys) => pendingKeys.push(...keys) }
      : undefined,
    afterSlice: async (ids, onThread) => {
      if (onThread) jobsOffThread += ids.length;
      if (pendingKeys.length < FILE_BATCH) return;
      await deleting;
      const keys = pendingKeys.splice(0);
      objects += keys.length;
      deleting = deleteObjects(storage, keys);
    },
  });
  await deleting;
  objects += pendingKeys.length;
  await deleteObjects(storage, pendingKeys.splice(0));
  let idempotencyKeys = 0;
  for (;;) {
    const n = await ctx.idempotency.prune(IDEMPOTENCY_KEEP_MS, SLICE);
    idempotencyKeys += n;
    if (n < SLICE || signal?.aborted) break;
    await yieldToEventLoop();
  }
  const webhookDeliveries = await ctx.webhooks.prune(signal);
  // The chart needs an hour; a week (or the longest retention) lets an operator look back further.
  const keepHours = Math.max(168, config.RETAIN_COMPLETED_HOURS, config.RETAIN_FAILED_HOURS);
  const throughputRows = await queue.trimThroughput(keepHours, signal);
  // SQLite's own upkeep; PostgreSQL's autovacuum and autoanalyze do the same there.
  let freedPages = 0;
  let vacuumMs = 0;
  if (ctx.sqlite) {
    const vacuumStarted = performance.now();
    freedPages = await incrementalVacuum(ctx.sqlite.$client, signal, upkeep);
    vacuumMs = Math.round(performance.now() - vacuumStarted);
    // After a large delete it re-analyses the tables: ~50-200 ms at 1M rows, one stall if run here.
    if (!(await upkeep?.optimize())) {
      await sqliteClient(ctx.sqlite.$client).exclusive(() => optimize(ctx.sqlite!.$client));
    }
  }
  const ms = Math.round(performance.now() - started);
  return {
    jobs,
    jobsOffThread,
    objects,
    idempotencyKeys,
    webhookDeliveries,
    throughputRows,
    freedPages,
    vacuumMs,
    ms,
  };
}

/** Free pages kept for reuse: new rows fill them without growing the file. */
const FREE_RESERVE = 0.25;

/**
 * With `auto_vacuum = INCREMENTAL` (new databases, see db/client.ts), gives free pages beyond a quarter of
 * the file back to the file system, a step at a time, so a one-off spike does not leave the file large for
 * ever while steady retention keeps reusing its pages. A database created before that setting keeps its
 * free pages for reuse (switching needs a one-off VACUUM: `easel db vacuum`).
 */
export async function incrementalVacuum(
  sqlite: Db["$client"],
  signal?: AbortSignal,
  upkeep?: Pick<Upkeep, "vacuum">,
): Promise<number> {
  const gate = sqliteClient(sqlite);
  const pragma = (name: string) => (sqlite.query(`PRAGMA ${name}`).values()[0]?.[0] as number) ?? 0;
  if ((await gate.exclusive(() => pragma("auto_vacuum"))) !== 2) return 0;
  let freed = 0;
  // Each page freed may move a page from the end of the file and rewrite its pointers (0.1-0.2 ms on a
  // small machine), or cost nothing when the end is free already: steps are sized by time like retention's
  // slices, and capped, because a cheap step says nothing about the next (a 2048-page step stalled 460 ms).
  // On the worker a step holds up only this connection's statements, not the event loop: larger steps,
  // fewer round trips between the threads (each waited 8 ms for a CPU at load 11; 10 ms steps made the
  // vacuum take a third longer than on the main thread).
  const steps = upkeep
    ? new SliceSizer(20, { start: 64, min: 16, max: 1024 })
    : new SliceSizer(5, { start: 16, min: 8, max: 64 });
  for (;;) {
    const excess = await gate.exclusive(
      () => pragma("freelist_count") - Math.floor(pragma("page_count") * FREE_RESERVE),
    );
    if (excess <= 0 || signal?.aborted) return freed;
    const step = Math.min(excess, steps.rows);
    // On the worker's connection the step stalls no request that does not touch the database; the size
    // still matters, as this connection's statements wait for it.
    let ms = (await upkeep?.vacuum(step)) ?? null;
    if (ms === null) {
      if (signal?.aborted) return freed;
      ms = await gate.exclusive(() => {
        const started = performance.now();
        sqlite.run(`PRAGMA incremental_vacuum(${step})`);
        return performance.now() - started;
      });
    }
    steps.observe(ms);
    freed += step;
    await yieldToEventLoop();
  }
}

/** A temp file this old belongs to a write that died with its process (writes take seconds at most). */
const TEMP_FILE_GRACE_MS = 15 * 60_000;

/**
 * Removes stored objects no row references (a crash between a write and its row), past a grace period,
 * and on local disk the temp files of writes cut short by a crash.
 */
export async function sweepStorage(ctx: Deps) {
  const swept = await sweepOrphans({
    storage: ctx.storage,
    prefixes: ["generations/", "inputs/", "cards/"],
    isReferenced: (keys) => ctx.assets.referenced(keys),
    olderThanMs: ctx.config.STORAGE_ORPHAN_GRACE_HOURS * 3_600_000,
  });
  const tempFiles =
    ctx.storage instanceof LocalStorage ? await ctx.storage.sweepTempFiles(TEMP_FILE_GRACE_MS) : 0;
  return { ...swept, tempFiles };
}
