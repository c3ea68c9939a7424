/**
 * The Storage contract both backends (local disk, S3-compatible) satisfy; test/storage/contract.ts runs the
 * same tests against each. Keys follow src/storage/keys.ts; every method throws InvalidKeyError for a bad key.
 * Times are epoch milliseconds.
 */

export type PutOptions = {
  contentType: string;
  /** Stored and served back verbatim; omitted means no Cache-Control header. */
  cacheControl?: string;
};

export type PutResult = { key: string; bytes: number; etag: string };

export type ObjectMeta = {
  contentType: string;
  cacheControl?: string;
  /** Size in bytes. */
  bytes: number;
  /** A quoted strong HTTP entity tag, e.g. `"5d41402a…"`; changes whenever the content does. */
  etag: string;
  lastModified: number;
};

export type StoredObject = ObjectMeta & { key: string; body: Uint8Array };

export type StreamedObject = ObjectMeta & { key: string; stream: ReadableStream<Uint8Array> };

export type ListedObject = { key: string; lastModified: number; bytes: number };

export type DeleteManyResult = { deleted: number };

export interface Storage {
  readonly kind: "local" | "s3";
  /** Writes the whole object; readers see the old object or the new one, never a partial one. */
  put(key: string, bytes: Uint8Array, opts: PutOptions): Promise<PutResult>;
  /** The object with its metadata, or null when there is none. */
  get(key: string): Promise<StoredObject | null>;
  /** Like get, but the body is a stream (for large objects); null when there is none. */
  stream(key: string): Promise<StreamedObject | null>;
  head(key: string): Promise<ObjectMeta | null>;
  /** Idempotent: deleting a missing key succeeds. */
  delete(key: string): Promise<void>;
  /** Deletes each key (idempotently); `deleted` counts the keys processed. */
  deleteMany(keys: readonly string[]): Promise<DeleteManyResult>;
  /**
   * Every object whose key starts with `prefix` (`""` for all), fetched page by page as iterated.
   * Order is unspecified (S3 gives lexicographic order, the local backend directory order).
   */
  list(prefix: string): AsyncIterable<ListedObject>;
  /** Where a browser can fetch the object (no request is made; the key need not exist). */
  publicUrl(key: string): string;
  /** Readiness: resolves when the store is reachable and writable, throws StorageError otherwise. */
  check(): Promise<void>;
}

export type StorageErrorCode = "storage_unavailable" | "storage_error";

/** Failures of the store itself (I/O, network, permissions) — not a missing object, which is null. */
export class StorageError extends Error {
  override name = "StorageError";
  readonly code: StorageErrorCode;

  constructor(code: StorageErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** For keys that are never rewritten (each version gets a new key). */
export const IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable";

/** Collects a listing into an array (tests, small prefixes). */
export async function listAll(storage: Storage, prefix: string): Promise<ListedObject[]> {
  const out: ListedObject[] = [];
  for await (const item of storage.list(prefix)) out.push(item);
  return out;
}
