import { columnList, rowMapper } from "../../db/rows";
import { type Asset, assets } from "../../db/schema";
import { padded, placeholders, type Sql } from "../../db/sql";
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

const COLUMNS = columnList(assets);
const toAsset = rowMapper(assets);

/** The `assets` table: one row per stored image. */
export class AssetRepository {
  readonly #sql: Sql;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** Records an asset; a retried item rewrites the same storage key and gets the same row back. */
  async upsert(a: NewAsset, id: string, now: number): Promise<string> {
    const row = await this.#sql.get<{ id: string }>(
      `INSERT INTO assets (id, job_id, item_idx, owner_id, storage_key, thumbnail_key, content_type, bytes, width, height, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (storage_key) DO UPDATE SET thumbnail_key = excluded.thumbnail_key, content_type = excluded.content_type,
         bytes = excluded.bytes, width = excluded.width, height = excluded.height, deleted_at = NULL
       RETURNING id`,
      [
        id,
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
      ],
    );
    return row!.id;
  }

  /** A job's live assets, by item then key. */
  async forJob(jobId: string): Promise<Asset[]> {
    const rows = await this.#sql.all(
      `SELECT ${COLUMNS} FROM assets WHERE job_id = ? AND deleted_at IS NULL ORDER BY item_idx, storage_key`,
      [jobId],
    );
    return rows.map(toAsset);
  }

  /** Gives every asset of a job to `ownerId`; the rows as they are now. */
  async transferJob(jobId: string, ownerId: string): Promise<Asset[]> {
    const rows = await this.#sql.all(`UPDATE assets SET owner_id = ? WHERE job_id = ? RETURNING ${COLUMNS}`, [
      ownerId,
      jobId,
    ]);
    return rows.map(toAsset);
  }

  /** `transferJob` for several jobs, each to its own new owner, in one statement. */
  async transferJobs(owners: ReadonlyMap<string, string>): Promise<Asset[]> {
    if (owners.size === 0) return [];
    // An IN list, not a join with a VALUES list: PostgreSQL plans the join as a hash join over every asset.
    const pairs = padded([...owners]);
    const rows = await this.#sql.all(
      `UPDATE assets SET owner_id = CASE job_id ${Array(pairs.length).fill("WHEN ? THEN ?").join(" ")} END
       WHERE job_id IN (${placeholders(pairs.length)}) RETURNING ${COLUMNS}`,
      [...pairs.flat(), ...pairs.map(([jobId]) => jobId)],
    );
    return rows.map(toAsset);
  }

  /** Deletes the rows of these jobs' assets; their storage keys (images and thumbnails). */
  async deleteForJobs(jobIds: string[]): Promise<{ storage_key: string; thumbnail_key: string | null }[]> {
    return this.#sql.all(
      `DELETE FROM assets WHERE job_id IN (${placeholders(jobIds.length)}) RETURNING storage_key, thumbnail_key`,
      jobIds,
    );
  }

  /** Which of `keys` an asset row or a card references: index probes per key (assets' unique key and
   * assets_thumbnail_key_idx; cards' image key). */
  async referenced(keys: string[]): Promise<string[]> {
    if (keys.length === 0) return [];
    const list = placeholders(keys.length);
    const rows = await this.#sql.all<{ k: string }>(
      `SELECT storage_key AS k FROM assets WHERE storage_key IN (${list})
       UNION SELECT thumbnail_key FROM assets WHERE thumbnail_key IN (${list})
       UNION SELECT image_key FROM cards WHERE image_key IN (${list})`,
      [...keys, ...keys, ...keys],
    );
    return rows.map((r) => r.k);
  }
}

/** Asset rows (one per stored image) and their public URLs. */
export class AssetService {
  readonly #storage: Storage;
  readonly #assets: AssetRepository;
  readonly #queue: Pick<Queue, "referencedInputKeys">;

  /** `queue` answers which uploaded inputs a job still needs (the generate job names them at enqueue). */
  constructor(sql: Sql, storage: Storage, queue: Pick<Queue, "referencedInputKeys">) {
    this.#assets = new AssetRepository(sql);
    this.#storage = storage;
    this.#queue = queue;
  }

  record(a: NewAsset, now = Date.now()): Promise<string> {
    return this.#assets.upsert(a, Bun.randomUUIDv7(), now);
  }

  async forJob(jobId: string): Promise<AssetView[]> {
    return (await this.#assets.forJob(jobId)).map((r) => this.view(r));
  }

  /** Gives a job's assets to a new owner (an instant claim) and returns them as `forJob` would. */
  async transferJob(jobId: string, ownerId: string): Promise<AssetView[]> {
    return this.#views(await this.#assets.transferJob(jobId, ownerId));
  }

  /** Gives each job's assets to its new owner (`owners`: job id → owner), one statement; the views by job. */
  async transferJobs(owners: ReadonlyMap<string, string>): Promise<Map<string, AssetView[]>> {
    const byJob = new Map<string, Asset[]>([...owners.keys()].map((id) => [id, []]));
    for (const r of await this.#assets.transferJobs(owners)) if (r.jobId) byJob.get(r.jobId)?.push(r);
    return new Map([...byJob].map(([id, rows]) => [id, this.#views(rows)]));
  }

  /** Live assets as `forJob` lists them: by item, then key. */
  #views(rows: Asset[]): AssetView[] {
    return rows
      .filter((r) => r.deletedAt === null)
      .sort((a, b) => (a.itemIdx ?? -1) - (b.itemIdx ?? -1) || a.storageKey.localeCompare(b.storageKey))
      .map((r) => this.view(r));
  }

  view(r: Asset): AssetView {
    return {
      id: r.id,
      itemIdx: r.itemIdx,
      url: this.#storage.publicUrl(r.storageKey),
      thumbnailUrl: r.thumbnailKey ? this.#storage.publicUrl(r.thumbnailKey) : null,
      contentType: r.contentType,
      bytes: r.bytes,
      width: r.width,
      height: r.height,
      createdAt: r.createdAt,
    };
  }

  /**
   * Deletes the asset rows of these jobs and returns their storage keys (images and thumbnails), for the
   * caller to delete from storage once the transaction has committed.
   */
  async takeForJobs(jobIds: string[]): Promise<string[]> {
    if (jobIds.length === 0) return [];
    const rows = await this.#assets.deleteForJobs(jobIds);
    return rows.flatMap((r) => (r.thumbnail_key ? [r.storage_key, r.thumbnail_key] : [r.storage_key]));
  }

  /**
   * `takeForJobs` as one SQLite statement, for retention slices run on another connection (a worker
   * thread's, `RetentionOptions.offThread`): given the job ids as a JSON array, it deletes their asset rows
   * and returns their storage keys (a null thumbnail is no key).
   */
  readonly takeForJobsSqlite =
    "DELETE FROM assets WHERE job_id IN (SELECT value FROM json_each(?1)) RETURNING storage_key, thumbnail_key";

  /**
   * Which of `keys` an asset row, a card or a job's input (its uploaded image or mask) references, for the
   * orphan sweep: index probes per key, never a read of every job's input.
   */
  async referenced(keys: string[]): Promise<Set<string>> {
    const [rows, inputs] = await Promise.all([
      this.#assets.referenced(keys),
      this.#queue.referencedInputKeys(keys),
    ]);
    return new Set([...rows, ...inputs]);
  }
}
