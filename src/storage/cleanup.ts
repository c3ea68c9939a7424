/**
 * Orphan sweep: deletes stored objects nothing refers to any more (a crash between writing a file and
 * recording it, a card render whose old version survived, an asset row purged without its file).
 *
 * The grace period is what makes this safe to run beside live work: a job writes its file first and its
 * database row after, so a fresh unreferenced object is usually one whose row is about to be written.
 */
import type { Storage } from "./types";

export type SweepOptions = {
  storage: Storage;
  /** Key prefixes to scan, e.g. `["generations/", "cards/"]`. */
  prefixes: readonly string[];
  /** Answers which of `keys` are still referenced (by the database); called once per batch. */
  isReferenced: (keys: string[]) => Promise<Set<string>> | Set<string>;
  /** Only objects last modified at least this long ago are candidates. */
  olderThanMs: number;
  /** @defaultValue Date.now() */
  now?: number;
  /** Keys per isReferenced call and per deleteMany. @defaultValue 500 */
  batchSize?: number;
  /** Stops between batches when aborted (shutdown). */
  signal?: AbortSignal;
};

export type SweepResult = {
  /** Objects listed under the prefixes. */
  scanned: number;
  /** Objects younger than the grace period, left alone. */
  recent: number;
  /** Old enough, but still referenced. */
  referenced: number;
  deleted: number;
};

export async function sweepOrphans(opts: SweepOptions): Promise<SweepResult> {
  const cutoff = (opts.now ?? Date.now()) - opts.olderThanMs;
  const batchSize = opts.batchSize ?? 500;
  const result: SweepResult = { scanned: 0, recent: 0, referenced: 0, deleted: 0 };
  let batch: string[] = [];

  const flush = async () => {
    if (batch.length === 0) return;
    const keys = batch;
    batch = [];
    const kept = await opts.isReferenced(keys);
    const orphans = keys.filter((k) => !kept.has(k));
    result.referenced += keys.length - orphans.length;
    if (orphans.length > 0) result.deleted += (await opts.storage.deleteMany(orphans)).deleted;
  };

  for (const prefix of opts.prefixes) {
    for await (const item of opts.storage.list(prefix)) {
      if (opts.signal?.aborted) return result;
      result.scanned++;
      if (item.lastModified > cutoff) {
        result.recent++;
        continue;
      }
      batch.push(item.key);
      if (batch.length >= batchSize) await flush();
    }
  }
  if (!opts.signal?.aborted) await flush();
  return result;
}
