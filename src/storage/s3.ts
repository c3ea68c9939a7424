/**
 * S3-compatible storage (AWS S3, R2, MinIO, B2, Spaces…) through Bun's built-in S3Client — no AWS SDK.
 *
 * Bun's client cannot set Cache-Control on upload nor return it on read, so object reads and writes go
 * through presigned URLs (signed by the S3Client) with plain fetch, which lets us send and read every
 * header in one request. Listing, deleting and signing use the S3Client directly.
 *
 * Addressing: virtual-hosted (`https://<bucket>.<host>/<key>`) unless `pathStyle` is set or the endpoint is
 * an IP address or `localhost` (a bucket subdomain of those cannot resolve), in which case path style
 * (`<endpoint>/<bucket>/<key>`) is used.
 */

import { isIP } from "node:net";
import { S3Client } from "bun";
import { assertValidKey, assertValidPrefix } from "./keys";
import {
  type DeleteManyResult,
  type ListedObject,
  type ObjectMeta,
  type PutOptions,
  type PutResult,
  type Storage,
  StorageError,
  type StoredObject,
  type StreamedObject,
} from "./types";

export type S3StorageOptions = {
  /** Service URL, e.g. `https://<account>.r2.cloudflarestorage.com`. @defaultValue AWS for `region` */
  endpoint?: string;
  bucket: string;
  /** @defaultValue "auto" (R2 style; AWS endpoints need the real region) */
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Public base URL for objects (CDN or public bucket domain); `publicUrl(key)` is `<publicUrl>/<key>`. */
  publicUrl?: string;
  /** Force path-style addressing (MinIO, most self-hosted servers). @defaultValue false */
  pathStyle?: boolean;
  /** Per-request timeout for reads and writes. @defaultValue 30000 */
  requestTimeoutMs?: number;
  /** Parallel requests used by deleteMany. @defaultValue 8 */
  deleteConcurrency?: number;
  /** Keys per list request. @defaultValue 1000 (the S3 maximum) */
  listPageSize?: number;
};

/** Presigned URLs are used at once; a short life limits the damage if one ever leaks into a log. */
const PRESIGN_SECONDS = 300;
const PROBE_KEY = "_easel/readiness-probe";

export class S3Storage implements Storage {
  readonly kind = "s3" as const;
  private readonly client: S3Client;
  private readonly publicBase?: string;
  private readonly timeoutMs: number;
  private readonly deleteConcurrency: number;
  private readonly listPageSize: number;

  constructor(opts: S3StorageOptions) {
    const region = opts.region ?? "auto";
    const endpoint = opts.endpoint ?? `https://s3.${region === "auto" ? "us-east-1" : region}.amazonaws.com`;
    this.client = new S3Client({
      ...addressing(endpoint, opts.bucket, opts.pathStyle ?? false),
      region,
      accessKeyId: opts.accessKeyId,
      secretAccessKey: opts.secretAccessKey,
    });
    this.publicBase = opts.publicUrl?.replace(/\/+$/, "");
    this.timeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.deleteConcurrency = opts.deleteConcurrency ?? 8;
    this.listPageSize = opts.listPageSize ?? 1000;
  }

  async put(key: string, bytes: Uint8Array, opts: PutOptions): Promise<PutResult> {
    const headers: Record<string, string> = { "content-type": opts.contentType };
    if (opts.cacheControl !== undefined) headers["cache-control"] = opts.cacheControl;
    const res = await this.send(assertValidKey(key), "PUT", { body: bytes, headers });
    await expectOk(res, `PUT ${key}`);
    return { key, bytes: bytes.byteLength, etag: res.headers.get("etag") ?? "" };
  }

  /**
   * The whole object. A body shorter than its Content-Length (a connection cut mid-transfer: seen under load)
   * is read again, and after that is an error: a caller never gets part of an object as if it were all of it.
   */
  async get(key: string): Promise<StoredObject | null> {
    for (let attempt = 1; ; attempt++) {
      const res = await this.send(assertValidKey(key), "GET");
      if (res.status === 404) return drained(res, null);
      await expectOk(res, `GET ${key}`);
      const body = new Uint8Array(await res.arrayBuffer());
      const expected = Number(res.headers.get("content-length") ?? body.byteLength);
      if (body.byteLength === expected)
        return { key, ...metaFromHeaders(res.headers, body.byteLength), body };
      if (attempt >= 3) {
        throw new StorageError(
          "storage_unavailable",
          `GET ${key}: got ${body.byteLength} of ${expected} bytes`,
        );
      }
    }
  }

  async stream(key: string): Promise<StreamedObject | null> {
    const res = await this.send(assertValidKey(key), "GET");
    if (res.status === 404) return drained(res, null);
    await expectOk(res, `GET ${key}`);
    const stream = res.body ?? new Blob([]).stream();
    return { key, ...metaFromHeaders(res.headers), stream };
  }

  async head(key: string): Promise<ObjectMeta | null> {
    const res = await this.send(assertValidKey(key), "HEAD");
    if (res.status === 404) return null;
    await expectOk(res, `HEAD ${key}`);
    return metaFromHeaders(res.headers);
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    try {
      await this.client.delete(key);
    } catch (err) {
      if (s3Code(err) === "NoSuchKey") return; // some S3-compatibles answer 404 instead of 204
      throw wrap(err, `DELETE ${key}`);
    }
  }

  async deleteMany(keys: readonly string[]): Promise<DeleteManyResult> {
    for (const key of keys) assertValidKey(key);
    let next = 0;
    const worker = async () => {
      while (next < keys.length) {
        const key = keys[next++];
        if (key !== undefined) await this.delete(key);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.deleteConcurrency, keys.length) }, worker));
    return { deleted: keys.length };
  }

  async *list(prefix: string): AsyncIterable<ListedObject> {
    assertValidPrefix(prefix);
    let continuationToken: string | undefined;
    do {
      const page = await this.client
        .list({ prefix, continuationToken, maxKeys: this.listPageSize })
        .catch((err: unknown) => Promise.reject(wrap(err, `LIST ${prefix}`)));
      for (const item of page.contents ?? []) {
        yield { key: item.key, bytes: item.size ?? 0, lastModified: parseTime(item.lastModified) };
      }
      continuationToken = page.isTruncated ? page.nextContinuationToken : undefined;
    } while (continuationToken);
  }

  publicUrl(key: string): string {
    assertValidKey(key);
    if (this.publicBase) return `${this.publicBase}/${key}`;
    // The presigned URL already has the right host and path for the addressing style; drop the signature.
    const url = new URL(this.client.presign(key, { method: "GET" }));
    return `${url.origin}${url.pathname}`;
  }

  async check(): Promise<void> {
    try {
      const res = await this.send(PROBE_KEY, "PUT", {
        body: "ok",
        headers: { "content-type": "text/plain" },
      });
      await expectOk(res, "PUT readiness probe");
      await this.client.delete(PROBE_KEY);
    } catch (err) {
      const cause = err instanceof StorageError ? err.message : String(err);
      throw new StorageError("storage_unavailable", `S3 storage not writable: ${cause}`, { cause: err });
    }
  }

  private async send(
    key: string,
    method: "GET" | "HEAD" | "PUT",
    init: { body?: Uint8Array | string; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const url = this.client.presign(key, { method, expiresIn: PRESIGN_SECONDS });
    try {
      return await fetch(url, { method, ...init, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      throw new StorageError("storage_unavailable", `${method} ${key}: ${String(err)}`, { cause: err });
    }
  }
}

function addressing(
  endpoint: string,
  bucket: string,
  pathStyle: boolean,
): { endpoint: string; bucket: string; virtualHostedStyle?: boolean } {
  const url = new URL(endpoint);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (pathStyle || isIP(host) !== 0 || host === "localhost") return { endpoint, bucket };
  url.hostname = `${bucket}.${url.hostname}`;
  return { endpoint: url.origin, bucket, virtualHostedStyle: true };
}

function metaFromHeaders(headers: Headers, size?: number): ObjectMeta {
  const meta: ObjectMeta = {
    contentType: headers.get("content-type") ?? "application/octet-stream",
    bytes: size ?? Number(headers.get("content-length") ?? 0),
    etag: headers.get("etag") ?? "",
    lastModified: parseTime(headers.get("last-modified") ?? undefined),
  };
  const cacheControl = headers.get("cache-control");
  if (cacheControl !== null) meta.cacheControl = cacheControl;
  return meta;
}

function parseTime(value: string | undefined): number {
  const t = value ? Date.parse(value) : Number.NaN;
  return Number.isNaN(t) ? 0 : t;
}

async function drained<T>(res: Response, value: T): Promise<T> {
  await res.body?.cancel();
  return value;
}

async function expectOk(res: Response, what: string): Promise<void> {
  if (res.ok) return;
  const text = await res.text().catch(() => "");
  const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? `HTTP ${res.status}`;
  const kind = res.status >= 500 || res.status === 403 ? "storage_unavailable" : "storage_error";
  throw new StorageError(kind, `${what} failed: ${code}`);
}

function s3Code(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err ? String(err.code) : undefined;
}

function wrap(err: unknown, what: string): StorageError {
  if (err instanceof StorageError) return err;
  const detail = s3Code(err) ?? (err instanceof Error ? err.message : String(err));
  return new StorageError("storage_error", `${what} failed: ${detail}`, { cause: err });
}
