import type { Database, Statement } from "bun:sqlite";
import type { Queue } from "../../queue";
import type { Storage } from "../../storage";
import type { AssetView } from "./model";

export type NewAsset = {
  jobId: string;
  itemIdx: number;
  ownerId: string | null;
  storageKey: string;
  thumbnailKey: string | null;
  contentType: string;
  bytes: number;
  width: number;
  height: number;
};

export type { AssetView };

type AssetRow = {
  id: string;
  item_idx: number | null;
  storage_key: string;
  thumbnail_key: string | null;
  content_type: string;
  bytes: number;
  width: number | null;
  height: number | null;
  created_at: number;
};

/** Asset rows (one per stored image) and their public URLs. */
export class AssetService {
  readonly #storage: Storage;
  readonly #upsert: Statement;
  readonly #byJob: Statement;
  readonly #transfer: Statement;
  readonly #db: Database;
  readonly #queue: Pick<Queue, "referencedInputKeys">;

  /** `queue` answers which uploaded inputs a job still needs (the generate job names them at enqueue). */
  constructor(db: Database, storage: Storage, queue: Pick<Queue, "referencedInputKeys">) {
    this.#db = db;
    this.#storage = storage;
    this.#queue = queue;
    // Upsert on the key: a retried item rewrites the same objects and must not duplicate their rows.
    this.#upsert = db.prepare(
      `INSERT INTO assets (id, job_id, item_idx, owner_id, storage_key, thumbnail_key, content_type, bytes, width, height, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (storage_key) DO UPDATE SET thumbnail_key = excluded.thumbnail_key, content_type = excluded.content_type,
         bytes = excluded.bytes, width = excluded.width, height = excluded.height, deleted_at = NULL
       RETURNING id`,
    );
    this.#byJob = db.prepare(
      "SELECT * FROM assets WHERE job_id = ? AND deleted_at IS NULL ORDER BY item_idx, storage_key",
    );
    // One statement: the ownership change hands back the rows it changed (sorted as #byJob sorts them).
    this.#transfer = db.prepare("UPDATE assets SET owner_id = ?1 WHERE job_id = ?2 RETURNING *");
  }

  record(a: NewAsset, now = Date.now()): string {
    const row = this.#upsert.get(
      Bun.randomUUIDv7(),
      a.jobId,
      a.itemIdx,
      a.ownerId,
      a.storageKey,
      a.thumbnailKey,
      a.contentType,
      a.bytes,
      a.width,
      a.height,
      now,
    ) as { id: string };
    return row.id;
  }

  forJob(jobId: string): AssetView[] {
    return (this.#byJob.all(jobId) as AssetRow[]).map((r) => this.view(r));
  }

  /** Gives a job's assets to a new owner (an instant claim) and returns them as `forJob` would. */
  transferJob(jobId: string, ownerId: string): AssetView[] {
    const rows = this.#transfer.all(ownerId, jobId) as (AssetRow & { deleted_at: number | null })[];
    return rows
      .filter((r) => r.deleted_at === null)
      .sort((a, b) => (a.item_idx ?? -1) - (b.item_idx ?? -1) || a.storage_key.localeCompare(b.storage_key))
      .map((r) => this.view(r));
  }

  view(r: AssetRow): AssetView {
    return {
      id: r.id,
      itemIdx: r.item_idx,
      url: this.#storage.publicUrl(r.storage_key),
      thumbnailUrl: r.thumbnail_key ? this.#storage.publicUrl(r.thumbnail_key) : null,
      contentType: r.content_type,
      bytes: r.bytes,
      width: r.width,
      height: r.height,
      createdAt: r.created_at,
    };
  }

  /**
   * Deletes the asset rows of these jobs and returns their storage keys (images and thumbnails), for the
   * caller to delete from storage once the transaction has committed.
   */
  takeForJobs(jobIds: string[]): string[] {
    if (jobIds.length === 0) return [];
    const rows = this.#db
      .query(
        "DELETE FROM assets WHERE job_id IN (SELECT value FROM json_each(?)) RETURNING storage_key, thumbnail_key",
      )
      .all(JSON.stringify(jobIds)) as { storage_key: string; thumbnail_key: string | null }[];
    return rows.flatMap((r) => (r.thumbnail_key ? [r.storage_key, r.thumbnail_key] : [r.storage_key]));
  }

  /**
   * Which of `keys` an asset row, a card or a job's input (its uploaded image or mask) references, for the
   * orphan sweep: index probes per key, never a read of every job's input.
   */
  referenced(keys: string[]): Set<string> {
    const rows = this.#db
      .query(
        `SELECT storage_key AS k FROM assets WHERE storage_key IN (SELECT value FROM json_each(?1))
         UNION SELECT thumbnail_key FROM assets WHERE thumbnail_key IN (SELECT value FROM json_each(?1))
         UNION SELECT image_key FROM cards WHERE image_key IN (SELECT value FROM json_each(?1))`,
      )
      .all(JSON.stringify(keys)) as { k: string }[];
    return new Set([...rows.map((r) => r.k), ...this.#queue.referencedInputKeys(keys)]);
  }
}
