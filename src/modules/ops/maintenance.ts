import type { Config } from "../../config";
import { type Db, optimize } from "../../db/client";
import type { Queue } from "../../queue";
import { LocalStorage, type Storage, sweepOrphans } from "../../storage";
import type { AssetService } from "../generate/service";
import type { IdempotencyService } from "../idempotency/service";

/** What this file needs from the services, and nothing more. */
type Deps = {
  assets: AssetService;
  config: Config;
  db: Db;
  idempotency: IdempotencyService;
  queue: Queue;
  storage: Storage;
};

/**
 * Retention: deletes finished jobs past their retention with their asset rows (same transaction), then
 * the assets' objects from storage. Returns what it removed.
 */
export async function runRetention(ctx: Deps): Promise<{ jobs: number; objects: number }> {
  const { config, queue, assets, storage } = ctx;
  const keys: string[] = [];
  const deleted = queue.cleanupRetention(config.RETAIN_COMPLETED_HOURS, config.RETAIN_FAILED_HOURS, (ids) => {
    keys.push(...assets.takeForJobs(ids));
  });
  if (keys.length) await storage.deleteMany(keys);
  ctx.idempotency.prune(24 * 3_600_000);
  optimize(ctx.db.$client);
  return { jobs: deleted.length, objects: keys.length };
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
